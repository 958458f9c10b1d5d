from twisted.application.service import ServiceMaker

squad = ServiceMaker(
    "squad",
    "squad.tap",
    "A fast, fault-tolerant sign-up service (POST /users) on Klein and MongoDB.",
    "squad",
)
