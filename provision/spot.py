"""A spot box's request: what AWS says about it, in words (``provision state``).

A trainbox spot box is a persistent request with interruption behaviour
``stop``: AWS stops the instance on an interruption and starts the same one
(same disk) when capacity returns; the box's agent then resumes its runs.
While it waits, the request's status code says why, and that is the line a
user wants: "waiting for capacity", not "stopped".
"""

from __future__ import annotations

from dataclasses import dataclass

# Status codes of spot requests (AWS: "Spot request status") and what they mean to a trainbox user.
SAYS = {
    "fulfilled": "running",
    "pending-evaluation": "being evaluated",
    "pending-fulfillment": "being fulfilled",
    "capacity-not-available": "waiting for capacity",
    "capacity-oversubscribed": "waiting for capacity",
    "instance-stopped-no-capacity": "interrupted: waiting for capacity to start it again",
    "marked-for-stop": "interrupted: AWS is stopping it",
    "instance-stopped-by-price": "interrupted by the price: waiting",
    "instance-stopped-by-user": "stopped by you (or the cost guard): starts again on `provision start`",
    "instance-terminated-by-user": "the instance was terminated",
    "price-too-low": "waiting: the maximum price is below the spot price",
    "canceled-before-fulfillment": "cancelled",
    "request-canceled-and-instance-running": "cancelled (the instance runs on)",
}


@dataclass(frozen=True)
class SpotRequest:
    id: str
    state: str  # open, active, disabled, cancelled, closed, failed
    code: str
    message: str

    @property
    def says(self) -> str:
        return f"{self.state}: {SAYS.get(self.code, self.code)}"

    @classmethod
    def from_boto(cls, d: dict) -> SpotRequest:
        status = d.get("Status") or {}
        return cls(d["SpotInstanceRequestId"], d.get("State", ""), status.get("Code", ""), status.get("Message", ""))


def request_of(ec2, request_id: str | None, instance_id: str) -> SpotRequest | None:
    """The spot request behind an instance: by the id the instance names, else by the instance."""
    if request_id:
        found = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])["SpotInstanceRequests"]
    else:
        found = ec2.describe_spot_instance_requests(Filters=[{"Name": "instance-id", "Values": [instance_id]}])[
            "SpotInstanceRequests"
        ]
    return SpotRequest.from_boto(found[0]) if found else None
