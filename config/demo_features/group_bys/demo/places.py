"""The place visits group of the demo catalog (config/demo/groups/place_visits.*)."""

from fetcher.definitions import AvroSchema, Column, EntitySource, GroupBy, Query

COLUMNS = {
    "s2_cell_id": "int64",
    "place_id": "string",
    "visits_1d": ("int64", "Visits in the last day"),
    "visits_7d": ("int64", "Visits in the last 7 days"),
    "unique_visitors_7d": ("int64", "Distinct visitors in the last 7 days"),
    "avg_dwell_minutes": ("double", "Mean dwell time, minutes"),
    "is_open": ("bool", "Open now, per the last listing update"),
    "peak_hours": ("list<int32>", "Hours of the day with the most visits"),
    "last_visit_ts": Column("int64", "Last visit, ms since epoch", nullable=True),
}

place_visits = GroupBy(
    name="place_visits",
    description="Foot traffic of a place within an S2 cell",
    keys=["s2_cell_id", "place_id"],
    sources=[
        EntitySource(
            snapshot_table="demo.place_visits_daily",
            query=Query(selects=list(COLUMNS)),
            columns=COLUMNS,
        )
    ],
    online=True,
    max_age="1d",
    avro=AvroSchema(namespace="fetcher.demo", record="PlaceVisits", doc="Foot traffic per place"),
)
