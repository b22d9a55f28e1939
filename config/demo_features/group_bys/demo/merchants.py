"""The merchant statistics group of the demo catalog (config/demo/groups/merchant_stats.*)."""

from fetcher.definitions import AvroSchema, Cache, Column, EntitySource, GroupBy, Query

COLUMNS = {
    "merchant_id": "int64",
    "category": ("string", "Merchant category"),
    "country": ("string", "Country of registration"),
    "mcc": ("int32", "ISO 18245 merchant category code"),
    "rating": ("double", "Mean review rating, 1-5"),
    "rating_count": ("int64", "Number of reviews"),
    "orders_1d": ("int64", "Orders in the last day"),
    "orders_7d": ("int64", "Orders in the last 7 days"),
    "orders_30d": ("int64", "Orders in the last 30 days"),
    "gmv_7d": ("double", "Gross merchandise value, 7 days, USD"),
    "gmv_30d": ("double", "Gross merchandise value, 30 days, USD"),
    "refund_rate": ("float", "Refunded share of orders, 30 days"),
    "chargeback_rate": Column("double", "Chargeback share of orders, 90 days", nullable=True),
    "avg_ticket": ("double", "Mean order value, USD"),
    "is_active": ("bool", "Took an order in the last 30 days"),
    "accepts_returns": ("bool", "Return policy offered"),
    "onboarded_days": ("int64", "Days since onboarding"),
    "hourly_orders_24h": ("list<int64>", "Orders per hour, last 24 hours"),
    "top_categories": ("list<string>", "Best-selling product categories"),
    "fraud_score": Column("double", "Fraud model score in [0, 1]", nullable=True),
    "payout_delay_days": Column("int64", "Payout delay, when on hold", nullable=True),
    "tags": ("list<string>", "Curated merchant tags"),
    "logo_hash": ("bytes", "SHA-256 of the merchant's logo"),
}

merchant_stats = GroupBy(
    name="merchant_stats",
    description="Order and risk statistics of a merchant",
    keys=["merchant_id"],
    sources=[
        EntitySource(
            snapshot_table="demo.merchant_stats_daily",
            query=Query(selects=list(COLUMNS)),
            columns=COLUMNS,
        )
    ],
    online=True,
    max_age="2d",
    ttl="14d",
    cache=Cache(l1=True, l2=True, l1_ttl=5, l2_ttl=60),
    avro=AvroSchema(namespace="fetcher.demo", record="MerchantStats",
                    doc="Merchant activity features"),
)
