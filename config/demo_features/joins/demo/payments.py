"""The payment risk service of the demo catalog (config/demo/services/user_merchant.json)."""

from group_bys.demo.merchants import merchant_stats
from group_bys.demo.users import user_profile

from fetcher.definitions import Join, JoinPart

user_merchant = Join(
    name="user_merchant",
    description="Payment risk: the user and the merchant of a transaction",
    left={"user_id": "int64", "merchant_id": "int64"},
    right_parts=[
        JoinPart(user_profile, prefix="user_"),
        JoinPart(merchant_stats, prefix="merchant_"),
    ],
    online=True,
)
