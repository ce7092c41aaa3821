"""``python -m chat_shared.cassandra_node``."""

import sys

from chat_shared.cassandra_node import main

sys.exit(main())
