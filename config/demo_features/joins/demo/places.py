"""The place recommendation service of the demo catalog (config/demo/services/user_place.json)."""

from group_bys.demo.places import place_visits
from group_bys.demo.users import user_profile

from fetcher.definitions import Join, JoinPart

user_place = Join(
    name="user_place",
    description="Place recommendations: the user and a candidate place",
    left={"user_id": "int64", "cell_id": "int64", "place_id": "string"},
    right_parts=[
        JoinPart(user_profile, prefix="user_"),
        JoinPart(place_visits, key_mapping={"cell_id": "s2_cell_id"}, prefix="place_"),
    ],
    online=True,
)
