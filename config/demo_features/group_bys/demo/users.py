"""The user profile group of the demo catalog (config/demo/groups/user_profile.*)."""

from fetcher.definitions import AvroSchema, Cache, Column, EntitySource, GroupBy, Query

COLUMNS = {
    "user_id": "int64",
    "age": ("int64", "Age in years"),
    "country": ("string", "ISO 3166-1 alpha-2 country of residence"),
    "account_age_days": ("int64", "Days since sign-up"),
    "is_verified": ("bool", "Identity verified"),
    "lifetime_spend": ("double", "Total spend, USD"),
    "avg_order_value": ("double", "Mean order value, USD"),
    "orders_7d": ("int64", "Orders in the last 7 days"),
    "orders_30d": ("int64", "Orders in the last 30 days"),
    "last_login_ts": Column("int64", "Last login, ms since epoch", nullable=True),
    "preferred_language": ("string", "BCP 47 language tag"),
    "device_type": ("string", "Most used device: ios, android or web"),
    "sessions_7d": ("int64", "App sessions in the last 7 days"),
    "avg_session_minutes": ("double", "Mean session length, minutes"),
    "churn_score": Column("double", "Churn model score in [0, 1]", nullable=True),
    "credit_score": Column("int64", "Bureau credit score, when known", nullable=True),
    "email_domain": ("string", "Domain of the account email"),
    "is_premium": ("bool", "Premium subscriber"),
    "category_affinity": ("list<double>", "Affinity per top-level category"),
    "recent_categories": ("list<string>", "Categories of the last 10 orders"),
    "loyalty_tier": Column("string", "bronze, silver or gold", nullable=True),
    "push_opt_in": ("bool", "Accepts push notifications"),
    "referral_count": Column("int64", "Users referred (added in v2)", default=0),
}

user_profile = GroupBy(
    name="user_profile",
    description="Profile and activity of a user, daily batch",
    keys=["user_id"],
    sources=[
        EntitySource(
            snapshot_table="demo.user_profile_daily",
            query=Query(selects=list(COLUMNS)),
            columns=COLUMNS,
        )
    ],
    online=True,
    max_age="7d",
    ttl="30d",
    cache=Cache(l1=True, l2=False, l1_ttl=5, l2_ttl=60),
    avro=AvroSchema(
        namespace="fetcher.demo",
        record="UserProfile",
        doc="User profile features",
        previous=("schemas/user_profile.v1.avsc",),
    ),
)
