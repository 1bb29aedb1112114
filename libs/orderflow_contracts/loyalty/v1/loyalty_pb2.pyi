from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetBalanceRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("customer_id", "points", "orders_awarded")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_AWARDED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    points: int
    orders_awarded: int
    def __init__(self, customer_id: _Optional[str] = ..., points: _Optional[int] = ..., orders_awarded: _Optional[int] = ...) -> None: ...

class CountAwardsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountAwardsResponse(_message.Message):
    __slots__ = ("awards", "orders_awarded", "points")
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_AWARDED_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    awards: int
    orders_awarded: int
    points: int
    def __init__(self, awards: _Optional[int] = ..., orders_awarded: _Optional[int] = ..., points: _Optional[int] = ...) -> None: ...
