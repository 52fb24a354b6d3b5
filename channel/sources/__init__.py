"""Event sources run by Kanal itself: PingSource."""
