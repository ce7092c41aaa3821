"""History service: conversations, membership, durable message history."""
