"""Asyncio client for the chat platform."""
