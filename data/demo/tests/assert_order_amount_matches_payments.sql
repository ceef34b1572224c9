-- Singular test: every order's dollar amount must equal the sum of its payments.
-- Returns the offending orders (a passing test returns no rows).
with payments as (

    select order_id, sum(amount_cents) / 100.0 as paid
    from {{ ref('stg_payments') }}
    group by order_id

)

select
    orders.order_id,
    orders.amount,
    coalesce(payments.paid, 0) as paid
from {{ ref('orders') }} as orders
left join payments
    on orders.order_id = payments.order_id
where abs(orders.amount - coalesce(payments.paid, 0)) > 0.001
