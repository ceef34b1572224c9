-- The raw tables are loaded by `dbt seed`; this hint makes `dbt build` seed them first.
-- depends_on: {{ ref('raw_orders') }}

with source as (

    select * from {{ source('jaffle_raw', 'raw_orders') }}

),

renamed as (

    select
        id as order_id,
        user_id as customer_id,
        order_date,
        status
    from source

)

select * from renamed
