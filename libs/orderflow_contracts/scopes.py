"""What a bearer token's `scope` claim may grant: the gateway checks these names, and whoever mints
tokens (an identity provider, or `orderflow token` in development) puts them in."""

from typing import Final

# A customer's own orders and loyalty balance: place orders for itself, read its own data.
ORDERS_SCOPE: Final = "orders"
# Operators: read every customer's data, and the admin endpoints.
ADMIN_SCOPE: Final = "admin"
