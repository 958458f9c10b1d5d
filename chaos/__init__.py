"""``bin/chaos``: load plus faults against squad on the embedded database."""
