{% set payment_methods = ['credit_card', 'coupon', 'bank_transfer', 'gift_card'] %}

with orders as (

    select * from {{ ref('stg_orders') }}

),

payments as (

    select * from {{ ref('stg_payments') }}

),

order_payments as (

    select
        order_id,
        {% for payment_method in payment_methods -%}
        sum(case when payment_method = '{{ payment_method }}' then amount_cents else 0 end) as {{ payment_method }}_amount_cents,
        {% endfor -%}
        sum(amount_cents) as total_amount_cents
    from payments
    group by order_id

),

final as (

    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        {% for payment_method in payment_methods -%}
        {{ cents_to_dollars('coalesce(order_payments.' ~ payment_method ~ '_amount_cents, 0)') }} as {{ payment_method }}_amount,
        {% endfor -%}
        {{ cents_to_dollars('coalesce(order_payments.total_amount_cents, 0)') }} as amount
    from orders
    left join order_payments
        on orders.order_id = order_payments.order_id

)

select * from final
