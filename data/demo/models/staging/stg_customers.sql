-- The raw tables are loaded by `dbt seed`; this hint makes `dbt build` seed them first.
-- depends_on: {{ ref('raw_customers') }}

with source as (

    select * from {{ source('jaffle_raw', 'raw_customers') }}

),

renamed as (

    select
        id as customer_id,
        first_name,
        last_name
    from source

)

select * from renamed
