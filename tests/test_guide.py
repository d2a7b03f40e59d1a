"""Every example of the streaming guide (``shared/seed/streaming-guide.txt``), run.

The guide's placeholders (``process_item``, ``send_notification``, an HTTP
client, ...) are replaced by small deterministic functions; ``asyncio.sleep``
and ``asyncio.get_event_loop().time()`` become ``anyio.sleep`` and
``anyio.current_time()`` so that every example runs on asyncio and on trio.
Whatever involves time runs under ``virtual_clock``: sleeps are instant and
the timestamps asserted here are exact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import (
    ErrorHandler,
    PipelineContext,
    batch_task,
    get_current_context,
    single_task,
)

from .conftest import virtual_clock


def stopwatch() -> Callable[[], float]:
    """Seconds since now, rounded so that virtual timestamps compare exactly."""
    start = anyio.current_time()
    return lambda: round(anyio.current_time() - start, 6)


def printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


# ---------------------------------------------------------------------------
# Streaming concepts: traditional vs streaming, the 8-task timeline
# ---------------------------------------------------------------------------

TIMELINE = [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8]
TIMELINE_ITEMS = list(enumerate(TIMELINE, start=1))


@single_task
async def process_item(item: tuple[int, float]) -> int:
    number, delay = item
    await anyio.sleep(delay)
    return number


@single_task
async def process_item_task(item: tuple[int, float]) -> int:
    number, delay = item
    await anyio.sleep(delay)
    return number


@single_task
async def transform_task(number: int) -> int:
    await anyio.sleep(0.05)
    return number * 10


@single_task
def validate_task(number: int) -> int | None:
    return number if number > 0 else None


@virtual_clock
async def test_streaming_pipeline_of_three_stages_releases_each_result_when_ready() -> None:
    pipeline = process_item_task | transform_task | validate_task
    elapsed = stopwatch()

    got = [(result, elapsed()) async for result in pipeline(TIMELINE_ITEMS)]

    assert got == [
        (10, 0.15),
        (20, 0.25),
        (30, 0.35),
        (40, 0.45),
        (50, 0.55),
        (60, 2.05),
        (70, 2.05),
        (80, 2.05),
    ]


@virtual_clock
async def test_timeline_ordered_yields_results_1_to_5_at_their_own_times_and_6_7_8_at_2s() -> None:
    elapsed = stopwatch()

    got = [(result, elapsed()) async for result in process_item(TIMELINE_ITEMS)]

    assert got == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
        (4, 0.4),
        (5, 0.5),
        (6, 2.0),
        (7, 2.0),  # buffered, waiting for 6
        (8, 2.0),
    ]


@virtual_clock
async def test_timeline_as_completed_yields_each_result_at_its_own_time() -> None:
    elapsed = stopwatch()

    got = [(result, elapsed()) async for result in process_item.as_completed(TIMELINE_ITEMS)]

    assert got == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
        (4, 0.4),
        (5, 0.5),
        (7, 0.7),
        (8, 0.8),
        (6, 2.0),
    ]


@virtual_clock
async def test_timeline_traditional_collect_gets_everything_at_once_at_2s() -> None:
    elapsed = stopwatch()

    all_results = await process_item(TIMELINE_ITEMS).collect()

    assert (all_results, elapsed()) == ([1, 2, 3, 4, 5, 6, 7, 8], 2.0)


@virtual_clock
async def test_timeline_first_five_results_are_available_75_percent_sooner() -> None:
    elapsed = stopwatch()
    first_five_at = None
    count = 0
    async for _ in process_item(TIMELINE_ITEMS):
        count += 1
        if count == 5:
            first_five_at = elapsed()
    everything_at = elapsed()

    assert (first_five_at, everything_at) == (0.5, 2.0)
    assert 1 - first_five_at / everything_at == 0.75


# ---------------------------------------------------------------------------
# Execution modes
# ---------------------------------------------------------------------------


@single_task
async def variable_delay_task(item: tuple[str, float]) -> str:
    name, delay = item
    await anyio.sleep(delay)
    return f"Processed {name}"


DEMO_ITEMS = [("fast", 0.1), ("medium", 0.5), ("slow", 2.0), ("quick", 0.2)]


async def ordered_streaming_demo() -> None:
    pipeline = variable_delay_task
    start = anyio.current_time()
    print("Ordered streaming:")
    async for result in pipeline(DEMO_ITEMS):
        print(f" {anyio.current_time() - start:.1f}s: {result}")


async def as_completed_demo() -> None:
    pipeline = variable_delay_task
    start = anyio.current_time()
    print("As-completed streaming:")
    async for result in pipeline.as_completed(DEMO_ITEMS):
        print(f" {anyio.current_time() - start:.1f}s: {result}")


@virtual_clock
async def test_ordered_streaming_demo_prints_input_order_with_slow_blocking_quick(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ordered_streaming_demo()

    assert printed(capsys) == [
        "Ordered streaming:",
        " 0.1s: Processed fast",
        " 0.5s: Processed medium",
        " 2.0s: Processed slow",
        " 2.0s: Processed quick",
    ]


@virtual_clock
async def test_as_completed_demo_prints_completion_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await as_completed_demo()

    assert printed(capsys) == [
        "As-completed streaming:",
        " 0.1s: Processed fast",
        " 0.2s: Processed quick",
        " 0.5s: Processed medium",
        " 2.0s: Processed slow",
    ]


@single_task
def shout(text: str) -> str:
    return text.upper()


@virtual_clock
async def test_with_execution_mode_as_completed_yields_in_completion_order() -> None:
    pipeline = variable_delay_task | shout
    fast_pipeline = pipeline.with_execution_mode("as_completed")
    elapsed = stopwatch()

    got = [(result, elapsed()) async for result in fast_pipeline(DEMO_ITEMS)]

    assert got == [
        ("PROCESSED FAST", 0.1),
        ("PROCESSED QUICK", 0.2),
        ("PROCESSED MEDIUM", 0.5),
        ("PROCESSED SLOW", 2.0),
    ]


@virtual_clock
async def test_with_execution_mode_leaves_the_original_pipeline_ordered() -> None:
    pipeline = variable_delay_task | shout
    pipeline.with_execution_mode("as_completed")

    assert await pipeline(DEMO_ITEMS).collect() == [
        "PROCESSED FAST",
        "PROCESSED MEDIUM",
        "PROCESSED SLOW",
        "PROCESSED QUICK",
    ]


@virtual_clock
async def test_pipeline_context_as_completed_via_with_context_yields_completion_order() -> None:
    pipeline = variable_delay_task | shout
    context = PipelineContext(execution_mode="as_completed")
    contextualized_pipeline = pipeline.with_context(**context.__dict__)

    assert await contextualized_pipeline(DEMO_ITEMS).collect() == [
        "PROCESSED FAST",
        "PROCESSED QUICK",
        "PROCESSED MEDIUM",
        "PROCESSED SLOW",
    ]


@pytest.mark.anyio
async def test_pipeline_context_applied_with_context_dict_is_current_inside_tasks() -> None:
    @single_task
    def where_am_i(item: str) -> tuple[str, str, str | None, dict[str, Any]]:
        context = get_current_context()
        assert context is not None
        return item, context.execution_mode, context.pipeline_id, dict(context.data)

    context = PipelineContext(execution_mode="as_completed", data={"tenant": "acme"})
    contextualized_pipeline = where_am_i.with_context(**context.__dict__)

    got = await contextualized_pipeline(["a"]).collect()

    [(item, mode, pipeline_id, data)] = got
    assert (item, mode, data) == ("a", "as_completed", {"tenant": "acme"})
    assert isinstance(pipeline_id, str)
    assert pipeline_id  # every run gets a fresh id, even though the template had None


# ---------------------------------------------------------------------------
# Streaming patterns: real-time processing
# ---------------------------------------------------------------------------

# symbol: (API latency in seconds, price)
STOCKS = {
    "AAPL": (0.4, 182.5),
    "GOOGL": (0.9, 140.0),
    "MSFT": (0.2, 151.25),
    "AMZN": (0.7, 99.0),
    "TSLA": (0.1, 250.0),
}
SYMBOLS = ["AAPL", "GOOGL", "MSFT", "AMZN", "TSLA"]


@single_task
async def fetch_stock_price(symbol: str) -> dict[str, Any]:
    latency, price = STOCKS[symbol]
    await anyio.sleep(latency)
    return {"symbol": symbol, "price": price, "timestamp": anyio.current_time()}


@single_task
async def check_alerts(price_data: dict[str, Any]) -> dict[str, Any] | None:
    """Filter for prices that trigger alerts."""
    if price_data["price"] > 150:
        return {**price_data, "alert": "HIGH_PRICE"}
    return None


async def real_time_monitoring(notifications: list[tuple[dict[str, Any], float]]) -> None:
    pipeline = fetch_stock_price | check_alerts
    start = anyio.current_time()
    elapsed = stopwatch()

    async def send_notification(alert: dict[str, Any]) -> None:
        fetched_after = round(alert["timestamp"] - start, 6)
        notifications.append(({**alert, "timestamp": fetched_after}, elapsed()))

    print("Monitoring stock prices (streaming alerts)...")
    async for alert in pipeline(SYMBOLS):
        print(f"🚨 ALERT: {alert['symbol']} at ${alert['price']:.2f}")
        await send_notification(alert)


@virtual_clock
async def test_real_time_monitoring_alerts_only_on_prices_above_150(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await real_time_monitoring([])

    assert printed(capsys) == [
        "Monitoring stock prices (streaming alerts)...",
        "🚨 ALERT: AAPL at $182.50",
        "🚨 ALERT: MSFT at $151.25",
        "🚨 ALERT: TSLA at $250.00",
    ]


@virtual_clock
async def test_real_time_monitoring_notifies_each_alert_as_soon_as_input_order_allows() -> None:
    notifications: list[tuple[dict[str, Any], float]] = []

    await real_time_monitoring(notifications)

    assert notifications == [
        # (alert, sent at); "timestamp" is when the price was fetched
        ({"symbol": "AAPL", "price": 182.5, "timestamp": 0.4, "alert": "HIGH_PRICE"}, 0.4),
        # MSFT was ready at 0.2 but comes after GOOGL, which is dropped at 0.9
        ({"symbol": "MSFT", "price": 151.25, "timestamp": 0.2, "alert": "HIGH_PRICE"}, 0.9),
        ({"symbol": "TSLA", "price": 250.0, "timestamp": 0.1, "alert": "HIGH_PRICE"}, 0.9),
    ]


# ---------------------------------------------------------------------------
# Streaming patterns: progress tracking
# ---------------------------------------------------------------------------


@single_task
async def process_document(doc_path: str) -> dict[str, Any]:
    """Process a document (processing time grows with its size)."""
    size = os.path.getsize(doc_path)  # noqa: ASYNC240 - as in the guide; a local stat
    processing_time = size / 1000  # 1 KB takes 1 s (the guide divides by 1 MB)
    await anyio.sleep(processing_time)
    return {"path": doc_path, "size": size, "processed_at": anyio.current_time()}


def write_documents(folder: Path, sizes: list[int]) -> list[str]:
    paths = []
    for number, size in enumerate(sizes, start=1):
        path = folder / f"doc{number}.txt"
        path.write_bytes(b"x" * size)
        paths.append(str(path))
    return paths


async def batch_document_processing(documents: list[str], progress_bar: list[float]) -> None:
    pipeline = process_document
    total_docs = len(documents)
    processed_count = 0

    async def update_progress_bar(progress: float) -> None:
        progress_bar.append(progress)

    print(f"Processing {total_docs} documents...")
    async for result in pipeline(documents):
        processed_count += 1
        progress = (processed_count / total_docs) * 100
        print(f"[{progress:5.1f}%] Processed: {Path(result['path']).name}")
        await update_progress_bar(progress)


@virtual_clock
async def test_progress_tracking_prints_progress_after_each_document_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = write_documents(tmp_path, [1000, 3000, 2000, 4000])

    await batch_document_processing(documents, [])

    assert printed(capsys) == [
        "Processing 4 documents...",
        "[ 25.0%] Processed: doc1.txt",
        "[ 50.0%] Processed: doc2.txt",
        "[ 75.0%] Processed: doc3.txt",
        "[100.0%] Processed: doc4.txt",
    ]


@virtual_clock
async def test_progress_tracking_updates_the_progress_bar_once_per_document(
    tmp_path: Path,
) -> None:
    documents = write_documents(tmp_path, [1000, 3000, 2000, 4000])
    progress_bar: list[float] = []

    await batch_document_processing(documents, progress_bar)

    assert progress_bar == [25.0, 50.0, 75.0, 100.0]


@virtual_clock
async def test_progress_tracking_results_carry_size_and_completion_time(tmp_path: Path) -> None:
    documents = write_documents(tmp_path, [1000, 3000, 2000, 4000])
    start = anyio.current_time()

    results = await process_document(documents).collect()

    assert [(r["path"], r["size"], round(r["processed_at"] - start, 6)) for r in results] == [
        (documents[0], 1000, 1.0),
        (documents[1], 3000, 3.0),
        (documents[2], 2000, 2.0),
        (documents[3], 4000, 4.0),
    ]


# ---------------------------------------------------------------------------
# Streaming patterns: early results
# ---------------------------------------------------------------------------

# query: (search time in seconds, number of results)
SEARCHES = {
    "python": (1.5, 3),
    "async": (0.2, 1),
    "streaming": (2.0, 4),
    "pipeline": (0.7, 2),
    "batch": (0.1, 4),
}
QUERIES = ["python", "async", "streaming", "pipeline", "batch"]


@single_task
async def search_database(query: str) -> list[dict[str, Any]]:
    """Search returns several results of varying relevance."""
    delay, count = SEARCHES[query]
    await anyio.sleep(delay)
    return [
        {"query": query, "result": f"Result {i}", "relevance": (i + 1) / 4} for i in range(count)
    ]


@single_task
async def rank_result(result: dict[str, Any]) -> dict[str, Any]:
    """Add ranking information."""
    await anyio.sleep(0.1)
    return {**result, "ranked": True, "score": result["relevance"] * 100}


def expected_ranked(query: str) -> list[dict[str, Any]]:
    _, count = SEARCHES[query]
    return [
        {
            "query": query,
            "result": f"Result {i}",
            "relevance": (i + 1) / 4,
            "ranked": True,
            "score": (i + 1) * 25.0,
        }
        for i in range(count)
    ]


@virtual_clock
async def test_early_results_flatten_each_search_list_into_ranked_results() -> None:
    pipeline = search_database | rank_result

    results = await pipeline(QUERIES).collect()

    assert results == [result for query in QUERIES for result in expected_ranked(query)]


@virtual_clock
async def test_early_results_as_completed_shows_each_querys_results_as_soon_as_ranked() -> None:
    pipeline = search_database | rank_result
    elapsed = stopwatch()

    shown = [(elapsed(), result) async for result in pipeline.as_completed(QUERIES)]

    # search time + 0.1 s of ranking; the results of one search tie, so their
    # order among themselves is not fixed
    assert [(at, result["query"]) for at, result in shown] == (
        [(0.2, "batch")] * 4
        + [(0.3, "async")]
        + [(0.8, "pipeline")] * 2
        + [(1.6, "python")] * 3
        + [(2.1, "streaming")] * 4
    )
    by_query = sorted(
        (result for _, result in shown), key=lambda r: (QUERIES.index(r["query"]), r["result"])
    )
    assert by_query == [result for query in QUERIES for result in expected_ranked(query)]


@virtual_clock
async def test_early_results_search_interface_prints_a_line_per_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = search_database | rank_result

    print("Search results (streaming):")
    async for result in pipeline.as_completed(QUERIES):
        print(f"  {result['query']}: {result['result']} (score: {result['score']:.1f})")

    header, *lines = printed(capsys)
    assert header == "Search results (streaming):"
    assert sorted(lines) == sorted(
        f"  {r['query']}: {r['result']} (score: {r['score']:.1f})"
        for query in QUERIES
        for r in expected_ranked(query)
    )
    assert [line.split(":")[0].strip() for line in lines] == (
        ["batch"] * 4 + ["async"] + ["pipeline"] * 2 + ["python"] * 3 + ["streaming"] * 4
    )


# ---------------------------------------------------------------------------
# Collection vs streaming
# ---------------------------------------------------------------------------

USER_DELAYS = {1: 0.1, 2: 0.3, 3: 0.2}


@single_task
async def load_user(user_id: int) -> dict[str, Any]:
    await anyio.sleep(USER_DELAYS[user_id])
    return {"id": user_id, "email": f"user{user_id}@example.com"}


@virtual_clock
async def test_streaming_handles_each_result_independently_as_it_is_released() -> None:
    pipeline = load_user
    sent: list[tuple[str, float]] = []
    elapsed = stopwatch()

    async def send_email(user: dict[str, Any]) -> None:
        sent.append((user["email"], elapsed()))

    async for user in pipeline([1, 2, 3]):
        await send_email(user)

    assert sent == [
        ("user1@example.com", 0.1),  # sent long before the slowest user is loaded
        ("user2@example.com", 0.3),
        ("user3@example.com", 0.3),
    ]


@virtual_clock
async def test_collect_gives_all_prices_for_an_average() -> None:
    pipeline = fetch_stock_price

    all_prices = await pipeline(SYMBOLS).collect()
    average_price = sum(p["price"] for p in all_prices) / len(all_prices)

    assert [p["symbol"] for p in all_prices] == SYMBOLS
    assert average_price == pytest.approx(164.55)


@virtual_clock
async def test_collect_gives_all_users_for_one_bulk_insert() -> None:
    pipeline = load_user
    inserts: list[list[dict[str, Any]]] = []

    class Database:
        async def bulk_insert(self, rows: list[dict[str, Any]]) -> None:
            inserts.append(rows)

    database = Database()
    all_users = await pipeline([1, 2, 3]).collect()
    await database.bulk_insert(all_users)

    assert inserts == [
        [
            {"id": 1, "email": "user1@example.com"},
            {"id": 2, "email": "user2@example.com"},
            {"id": 3, "email": "user3@example.com"},
        ]
    ]


@virtual_clock
async def test_collect_then_sort_results_by_score() -> None:
    pipeline = search_database | rank_result

    results = await pipeline(QUERIES).collect()
    sorted_results = sorted(results, key=lambda x: x["score"], reverse=True)

    # sorted() is stable and collect() keeps input order, so ties keep query order
    assert [(r["query"], r["score"]) for r in sorted_results] == [
        ("streaming", 100.0),
        ("batch", 100.0),
        ("python", 75.0),
        ("streaming", 75.0),
        ("batch", 75.0),
        ("python", 50.0),
        ("streaming", 50.0),
        ("pipeline", 50.0),
        ("batch", 50.0),
        ("python", 25.0),
        ("async", 25.0),
        ("streaming", 25.0),
        ("pipeline", 25.0),
        ("batch", 25.0),
    ]


# ---------------------------------------------------------------------------
# Advanced streaming patterns: buffered streaming
# ---------------------------------------------------------------------------


@single_task
async def create_item(number: int) -> dict[str, Any]:
    return {"id": number}


@batch_task(max_size=10, min_size=1)
async def buffered_processor(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Process in controlled batches."""
    print(f"Processing batch of {len(items)} items")
    await anyio.sleep(0.5)
    return [{"processed": True, **item} for item in items]


async def controlled_streaming(released: list[tuple[Any, float]]) -> None:
    large_dataset = range(1000)
    pipeline = create_item | buffered_processor
    elapsed = stopwatch()

    batch_count = 0
    async for result in pipeline(large_dataset):
        released.append((result, elapsed()))
        if batch_count % 50 == 0:
            print(f"Processed item {result}")
        batch_count += 1


@virtual_clock
async def test_buffered_streaming_processes_range_1000_in_batches_of_10(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await controlled_streaming([])

    batch_lines = [line for line in printed(capsys) if line.startswith("Processing batch")]
    assert batch_lines == ["Processing batch of 10 items"] * 100


@virtual_clock
async def test_buffered_streaming_flattens_each_batch_into_items_in_order() -> None:
    released: list[tuple[Any, float]] = []

    await controlled_streaming(released)

    assert [result for result, _ in released] == [
        {"processed": True, "id": number} for number in range(1000)
    ]


@virtual_clock
async def test_buffered_streaming_releases_each_batch_as_soon_as_it_is_processed() -> None:
    released: list[tuple[Any, float]] = []

    await controlled_streaming(released)

    # one batch call at a time, 0.5 s each: batch k is out at 0.5 * k
    assert [at for _, at in released] == [0.5 * (n // 10 + 1) for n in range(1000)]


@virtual_clock
async def test_buffered_streaming_logs_every_50th_item(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await controlled_streaming([])

    item_lines = [line for line in printed(capsys) if line.startswith("Processed item")]
    assert item_lines == [
        f"Processed item {{'processed': True, 'id': {n}}}" for n in range(0, 1000, 50)
    ]


# ---------------------------------------------------------------------------
# Advanced streaming patterns: multi-source streaming
# ---------------------------------------------------------------------------

# endpoint: (response time in seconds, JSON body)
API_RESPONSES = {
    "https://api1.example.com/data": (0.3, [{"source": 1, "n": 1}, {"source": 1, "n": 2}]),
    "https://api2.example.com/data": (0.1, [{"source": 2, "n": 1}]),
    "https://api3.example.com/data": (
        0.2,
        [{"source": 3, "n": 1}, {"source": 3, "n": 2}, {"source": 3, "n": 3}],
    ),
}
ENDPOINTS = list(API_RESPONSES)


@single_task
async def fetch_from_api(endpoint: str) -> list[dict[str, Any]]:
    """Fetch data from an API endpoint (a fake HTTP client)."""
    delay, body = API_RESPONSES[endpoint]
    await anyio.sleep(delay)
    return [dict(record) for record in body]


@virtual_clock
async def test_multi_source_streams_every_sources_records_as_that_source_answers() -> None:
    # A list result is flattened (api.md section 2), so what arrives is each
    # source's records, source by source in the order the sources answer.
    pipeline = fetch_from_api
    all_data: list[dict[str, Any]] = []
    processed: list[tuple[dict[str, Any], float]] = []
    elapsed = stopwatch()

    async def process_immediately(record: dict[str, Any]) -> None:
        processed.append((record, elapsed()))

    async for record in pipeline.as_completed(ENDPOINTS):
        all_data.append(record)
        await process_immediately(record)

    assert [(r["source"], at) for r, at in processed] == [
        (2, 0.1),
        (3, 0.2),
        (3, 0.2),
        (3, 0.2),
        (1, 0.3),
        (1, 0.3),
    ]
    assert sorted(all_data, key=lambda r: (r["source"], r["n"])) == sorted(
        (record for _, body in API_RESPONSES.values() for record in body),
        key=lambda r: (r["source"], r["n"]),
    )


@virtual_clock
async def test_multi_source_keeps_each_sources_records_together_in_their_own_order() -> None:
    pipeline = fetch_from_api

    records = [record async for record in pipeline.as_completed(ENDPOINTS)]

    assert records == [
        {"source": 2, "n": 1},
        {"source": 3, "n": 1},
        {"source": 3, "n": 2},
        {"source": 3, "n": 3},
        {"source": 1, "n": 1},
        {"source": 1, "n": 2},
    ]


# ---------------------------------------------------------------------------
# Advanced streaming patterns: conditional streaming
# ---------------------------------------------------------------------------

CATEGORY_OF_KIND = {"alert": "urgent", "invoice": "bulk", "note": "normal"}
ROUTE_OF_CATEGORY = {"urgent": "fast_track", "bulk": "bulk_track"}


async def classify_item(item: dict[str, Any]) -> str:
    await anyio.sleep(0.01 * item["id"])
    return CATEGORY_OF_KIND[item["kind"]]


def get_route(category: str) -> str:
    return ROUTE_OF_CATEGORY.get(category, "default_track")


async def fast_process(item: dict[str, Any]) -> dict[str, Any]:
    await anyio.sleep(0.1)
    return {**item, "processed_by": "fast"}


async def bulk_process(item: dict[str, Any]) -> dict[str, Any]:
    await anyio.sleep(0.5)
    return {**item, "processed_by": "bulk"}


async def default_process(item: dict[str, Any]) -> dict[str, Any]:
    await anyio.sleep(0.3)
    return {**item, "processed_by": "default"}


@single_task
async def classify_and_route(item: dict[str, Any]) -> dict[str, Any]:
    """Classify an item and add routing info."""
    category = await classify_item(item)
    return {**item, "category": category, "route": get_route(category)}


@single_task
async def route_processor(item: dict[str, Any]) -> dict[str, Any]:
    """Process according to the route."""
    route = item["route"]
    if route == "fast_track":
        return await fast_process(item)
    elif route == "bulk_track":
        return await bulk_process(item)
    else:
        return await default_process(item)


MIXED_DATA = [
    {"id": 1, "kind": "note"},
    {"id": 2, "kind": "alert"},
    {"id": 3, "kind": "invoice"},
    {"id": 4, "kind": "alert"},
]


async def conditional_streaming(handled: dict[str, list[int]]) -> None:
    pipeline = classify_and_route | route_processor

    async def handle_urgent(result: dict[str, Any]) -> None:
        handled["urgent"].append(result["id"])

    async def handle_normal(result: dict[str, Any]) -> None:
        handled["normal"].append(result["id"])

    async for result in pipeline(MIXED_DATA):
        category = result.get("category")
        if category == "urgent":
            await handle_urgent(result)
        else:
            await handle_normal(result)


@virtual_clock
async def test_conditional_streaming_processes_each_item_on_its_categorys_route() -> None:
    pipeline = classify_and_route | route_processor

    results = await pipeline(MIXED_DATA).collect()

    assert [(r["id"], r["category"], r["route"], r["processed_by"]) for r in results] == [
        (1, "normal", "default_track", "default"),
        (2, "urgent", "fast_track", "fast"),
        (3, "bulk", "bulk_track", "bulk"),
        (4, "urgent", "fast_track", "fast"),
    ]


@virtual_clock
async def test_conditional_streaming_sends_urgent_results_to_the_urgent_handler() -> None:
    handled: dict[str, list[int]] = {"urgent": [], "normal": []}

    await conditional_streaming(handled)

    assert handled == {"urgent": [2, 4], "normal": [1, 3]}


@virtual_clock
async def test_conditional_streaming_routes_take_their_own_processing_time() -> None:
    pipeline = classify_and_route | route_processor
    elapsed = stopwatch()

    finished = [(r["id"], elapsed()) async for r in pipeline.as_completed(MIXED_DATA)]

    # classification takes 0.01 s per id, then 0.1 s (fast), 0.3 s (default), 0.5 s (bulk)
    assert finished == [(2, 0.12), (4, 0.14), (1, 0.31), (3, 0.53)]


# ---------------------------------------------------------------------------
# Performance optimization: execution mode selection
# ---------------------------------------------------------------------------


@virtual_clock
async def test_execution_mode_comparison_prints_total_time_of_each_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = process_item | validate_task
    data = TIMELINE_ITEMS
    ordered_pipeline = pipeline  # the default is ordered
    fast_pipeline = pipeline.with_execution_mode("as_completed")

    start_time = anyio.current_time()
    async for _ in ordered_pipeline(data):
        pass
    ordered_time = anyio.current_time() - start_time

    start_time = anyio.current_time()
    async for _ in fast_pipeline(data):
        pass
    as_completed_time = anyio.current_time() - start_time

    print(f"Ordered: {ordered_time:.2f}s, As-completed: {as_completed_time:.2f}s")
    # both modes run every item concurrently; only the release order differs
    assert printed(capsys) == ["Ordered: 2.00s, As-completed: 2.00s"]


@virtual_clock
async def test_execution_mode_comparison_as_completed_releases_7_and_8_before_6() -> None:
    pipeline = process_item | validate_task
    fast_pipeline = pipeline.with_execution_mode("as_completed")

    elapsed = stopwatch()
    ordered_times = [elapsed() async for _ in pipeline(TIMELINE_ITEMS)]
    elapsed = stopwatch()
    as_completed_times = [elapsed() async for _ in fast_pipeline(TIMELINE_ITEMS)]

    assert ordered_times == [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 2.0, 2.0]
    assert as_completed_times == [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 2.0]


# ---------------------------------------------------------------------------
# Performance optimization: batch size tuning
# ---------------------------------------------------------------------------


def process_small_batch(items: list[int]) -> list[int]:
    return [item * 10 for item in items]


def process_large_batch(items: list[int]) -> list[int]:
    return [item * 100 for item in items]


@pytest.mark.anyio
async def test_small_batches_of_at_most_5_process_every_item_including_the_remainder() -> None:
    sizes: list[int] = []

    @batch_task(max_size=5, min_size=1)
    async def low_latency_batch(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return process_small_batch(items)

    results = await low_latency_batch(range(12)).collect()

    assert sizes == [5, 5, 2]
    assert results == [n * 10 for n in range(12)]


@pytest.mark.anyio
async def test_large_batches_of_100_process_a_remainder_of_at_least_min_size_10(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sizes: list[int] = []

    @batch_task(max_size=100, min_size=10)
    async def high_throughput_batch(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return process_large_batch(items)

    with caplog.at_level(logging.WARNING):
        results = await high_throughput_batch(range(250)).collect()

    assert sizes == [100, 100, 50]
    assert results == [n * 100 for n in range(250)]
    assert caplog.records == []


@pytest.mark.anyio
async def test_large_batches_drop_a_remainder_smaller_than_min_size_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sizes: list[int] = []

    @batch_task(max_size=100, min_size=10)
    async def high_throughput_batch(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return process_large_batch(items)

    with caplog.at_level(logging.WARNING):
        results = await high_throughput_batch(range(205)).collect()

    assert sizes == [100, 100]
    assert results == [n * 100 for n in range(200)]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "high_throughput_batch" in message
    assert "5 item" in message
    assert "min_size=10" in message


async def one_item_every_tenth_of_a_second(count: int) -> AsyncIterator[int]:
    for number in range(count):
        await anyio.sleep(0.1)
        yield number


@virtual_clock
async def test_small_batches_release_their_first_results_sooner_than_large_batches() -> None:
    @batch_task(max_size=5, min_size=1)
    async def low_latency_batch(items: list[int]) -> list[int]:
        return process_small_batch(items)

    @batch_task(max_size=100, min_size=10)
    async def high_throughput_batch(items: list[int]) -> list[int]:
        return process_large_batch(items)

    elapsed = stopwatch()
    async for _ in low_latency_batch(one_item_every_tenth_of_a_second(200)):
        small_first = elapsed()
        break
    elapsed = stopwatch()
    async for _ in high_throughput_batch(one_item_every_tenth_of_a_second(200)):
        large_first = elapsed()
        break

    assert (small_first, large_first) == (0.5, 10.0)


# ---------------------------------------------------------------------------
# Performance optimization: memory-conscious streaming
# ---------------------------------------------------------------------------

N_ITEMS = 20_000


@single_task
async def validate_item(item: dict[str, Any]) -> dict[str, Any] | None:
    return item if item["data"].startswith("item_") else None


@single_task
async def transform_item(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "data": item["data"].upper()}


@single_task
async def save_item(item: dict[str, Any]) -> int:
    return item["id"]


async def memory_efficient_processing(progress: dict[str, Any]) -> list[int]:
    """Process a large dataset without loading it all into memory."""

    async def data_generator() -> AsyncIterator[dict[str, Any]]:
        for i in range(N_ITEMS):
            progress["produced"] += 1
            yield {"id": i, "data": f"item_{i}"}
            if i % 10000 == 0:
                await anyio.lowlevel.checkpoint()  # yield control periodically

    pipeline = validate_item | transform_item | save_item
    saved: list[int] = []
    processed_count = 0
    async for result in pipeline(data_generator()):
        saved.append(result)
        processed_count += 1
        progress["max_read_ahead"] = max(
            progress["max_read_ahead"], progress["produced"] - processed_count
        )
        if processed_count % 1000 == 0:
            print(f"Processed {processed_count} items")
    return saved


@pytest.mark.anyio
async def test_memory_conscious_streaming_processes_every_generated_item_in_order() -> None:
    progress = {"produced": 0, "max_read_ahead": 0}

    saved = await memory_efficient_processing(progress)

    assert saved == list(range(N_ITEMS))


@pytest.mark.anyio
async def test_memory_conscious_streaming_prints_progress_every_1000_items(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = {"produced": 0, "max_read_ahead": 0}

    await memory_efficient_processing(progress)

    assert printed(capsys) == [f"Processed {n} items" for n in range(1000, N_ITEMS + 1, 1000)]


@pytest.mark.anyio
async def test_memory_conscious_streaming_reads_the_generator_only_a_bounded_way_ahead() -> None:
    progress = {"produced": 0, "max_read_ahead": 0}

    await memory_efficient_processing(progress)

    # the source is read lazily, never more than about one window ahead of the
    # consumer (256 items by default), however long the input is
    assert progress["produced"] == N_ITEMS
    assert progress["max_read_ahead"] <= 512


# ---------------------------------------------------------------------------
# Error handling in streaming: graceful degradation
# ---------------------------------------------------------------------------


@single_task(on_error="skip_item")
async def fault_tolerant_task(item: dict[str, Any]) -> dict[str, Any]:
    """Continue streaming even if some items fail."""
    if item.get("corrupted"):
        raise ValueError("Corrupted data")
    return {"processed": True, **item}


async def resilient_streaming() -> None:
    mixed_data = [
        {"id": 1, "valid": True},
        {"id": 2, "corrupted": True},  # will be skipped
        {"id": 3, "valid": True},
    ]
    pipeline = fault_tolerant_task
    async for result in pipeline(mixed_data):
        print(f"Successfully processed: {result}")


@pytest.mark.anyio
async def test_graceful_degradation_skips_the_corrupted_item_and_streams_items_1_and_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await resilient_streaming()

    assert printed(capsys) == [
        "Successfully processed: {'processed': True, 'id': 1, 'valid': True}",
        "Successfully processed: {'processed': True, 'id': 3, 'valid': True}",
    ]


# ---------------------------------------------------------------------------
# Error handling in streaming: error tracking
# ---------------------------------------------------------------------------


class ErrorAsResult(ErrorHandler):
    """Turn a failed item into a result that carries an "error" key."""

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        return True, {"input": item, "error": str(error)}


@single_task(error_handler=ErrorAsResult())
async def parse_reading(raw: str) -> dict[str, Any]:
    return {"input": raw, "value": int(raw)}


async def streaming_with_error_tracking() -> None:
    pipeline = parse_reading
    data = ["1", "2", "x", "4", "y"]
    success_count = 0
    error_count = 0

    async for result in pipeline(data):
        if result.get("error"):
            error_count += 1
            print(f"Error encountered: {result['error']}")
        else:
            success_count += 1
            print(f"Success: {result}")
        total = success_count + error_count
        success_rate = (success_count / total) * 100 if total > 0 else 0
        print(f"Success rate: {success_rate:.1f}% ({success_count}/{total})")


@pytest.mark.anyio
async def test_error_tracking_counts_results_carrying_an_error_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await streaming_with_error_tracking()

    assert printed(capsys) == [
        "Success: {'input': '1', 'value': 1}",
        "Success rate: 100.0% (1/1)",
        "Success: {'input': '2', 'value': 2}",
        "Success rate: 100.0% (2/2)",
        "Error encountered: invalid literal for int() with base 10: 'x'",
        "Success rate: 66.7% (2/3)",
        "Success: {'input': '4', 'value': 4}",
        "Success rate: 75.0% (3/4)",
        "Error encountered: invalid literal for int() with base 10: 'y'",
        "Success rate: 60.0% (3/5)",
    ]
