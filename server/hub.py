"""WebSocket fan-out: each subscriber has a one-forecast slot, so a slow one skips, never queues.

The ingest thread hands each forecast to the event loop with `call_soon_threadsafe` (only for
sessions that have subscribers), and the loop puts it in every subscriber's slot. A subscriber
still sending the previous forecast when a newer one arrives finds only the newest in its slot:
the stale ones are counted as skipped, not sent late. Memory stays one forecast per subscriber
and neither ingest nor the other subscribers ever wait for a slow one.

Closing keeps what the slot holds: a subscription closed while a forecast waits sends it, then
ends. At stop, `close_all_and_wait` runs after the ingest thread has drained, so each WebSocket
subscriber sends the forecast of the last frames before its 1001 close.
"""

from __future__ import annotations

import asyncio
import logging

from poco_rt.errors import SubscriptionLimitReached
from poco_rt.server.forecasts import PublishedForecast
from poco_rt.server.metrics import ServerMetrics

logger = logging.getLogger(__name__)


class Subscriber:
    def __init__(self, session: str, metrics: ServerMetrics) -> None:
        self.session = session
        self.skipped = 0
        self.closed = False  # the session was closed or the server is stopping
        self._latest: PublishedForecast | None = None
        self._ready = asyncio.Event()
        self._metrics = metrics

    def offer(self, forecast: PublishedForecast) -> None:
        if self.closed:
            return  # a closed subscription takes no more; the one it holds is still sent
        if self._latest is not None:
            self.skipped += 1
            self._metrics.websocket_skipped.inc()
        self._latest = forecast
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self) -> PublishedForecast | None:
        """The newest forecast not yet taken, waiting for one; once closed, the one held, then None."""
        await self._ready.wait()
        if not self.closed:
            self._ready.clear()  # once closed it stays set: every later call returns at once
        forecast, self._latest = self._latest, None
        return forecast


class SubscriptionSlots:
    """Forecast WebSockets open now, against `max_websocket_subscribers`; used on the event loop only, so no lock.

    Each subscription costs a send of every forecast of its session (N x P values) and a task, so
    their number is bounded like sessions and queued jobs are.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._taken = 0

    def take(self) -> None:
        """One slot, or SubscriptionLimitReached naming the limit."""
        if self._taken >= self._limit:
            raise SubscriptionLimitReached(
                f"{self._taken} forecast subscriptions are open, the limit (max_websocket_subscribers) is {self._limit}"
            )
        self._taken += 1

    def release(self) -> None:
        self._taken -= 1


class ForecastHub:
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._none_left = asyncio.Event()  # set while no subscription is open
        self._none_left.set()

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The loop forecasts are handed to (set at start, cleared at stop)."""
        self._loop = loop

    def handoff(self, forecast: PublishedForecast) -> None:
        """From the ingest thread: schedule delivery on the loop, if anyone listens to this session."""
        loop = self._loop
        if loop is not None and self._subscribers.get(forecast.header.session):
            loop.call_soon_threadsafe(self._deliver, forecast)

    def subscribe(self, session: str) -> Subscriber:
        subscriber = Subscriber(session, self._metrics)
        self._subscribers = {**self._subscribers, session: {*self._subscribers.get(session, ()), subscriber}}
        self._none_left.clear()
        self._metrics.websocket_subscribers.inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        remaining = self._subscribers.get(subscriber.session, set()) - {subscriber}
        subscribers = {**self._subscribers, subscriber.session: remaining}
        if not remaining:
            del subscribers[subscriber.session]
        self._subscribers = subscribers
        if not subscribers:
            self._none_left.set()
        self._metrics.websocket_subscribers.dec()

    def close_session(self, session: str) -> None:
        """On the loop: end every subscription to a closed session."""
        for subscriber in self._subscribers.get(session, ()):
            subscriber.close()

    def close_all(self) -> None:
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.close()

    async def close_all_and_wait(self, timeout_s: float) -> None:
        """On the loop: close every subscription, then wait (at most `timeout_s`) until each sent what it held."""
        self.close_all()
        try:
            await asyncio.wait_for(self._none_left.wait(), timeout_s)
        except TimeoutError:
            logger.warning("%d WebSocket subscribers were still sending after %.1f s", self._count(), timeout_s)

    def _count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def _deliver(self, forecast: PublishedForecast) -> None:
        for subscriber in self._subscribers.get(forecast.header.session, ()):
            subscriber.offer(forecast)
