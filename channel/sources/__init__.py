"""Event sources run by Kanal itself: PingSource (schedules, due ticks, events; the scheduler
that sends them lives in `channel.sources.scheduler`, imported by the controller only)."""

from channel.sources.ping import PING_TYPE, Due, due_ticks, ping_event
from channel.sources.schedule import Schedule, ScheduleError

__all__ = ["PING_TYPE", "Due", "Schedule", "ScheduleError", "due_ticks", "ping_event"]
