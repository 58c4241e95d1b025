from mailctl.packing import Outgoing, attributes_size, oversized, pack


def _message(chunk: int, size: int) -> Outgoing:
    return Outgoing(chunk=chunk, body="x" * size, attributes={}, recipients=1)


def test_batches_never_exceed_ten_entries():
    # Given 25 small messages / When packed / Then 10 + 10 + 5, in order
    batches = list(pack([_message(i, 10) for i in range(25)], max_bytes=1000))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [m.chunk for b in batches for m in b] == list(range(25))


def test_entries_each_under_the_limit_but_together_over_it_are_split():
    # Given three messages of 400 KiB each against a 1 MiB limit
    messages = [_message(i, 400 * 1024) for i in range(3)]
    # When packed / Then no batch totals more than the limit
    batches = list(pack(messages, max_bytes=1048576))
    assert [len(b) for b in batches] == [2, 1]
    assert all(sum(m.size for m in b) <= 1048576 for b in batches)


def test_a_single_message_over_the_limit_comes_out_alone_for_s3():
    # Given a small, an oversized and another small message
    messages = [_message(0, 10), _message(1, 300_000), _message(2, 10)]
    # When packed against a 256 KiB queue
    batches = list(pack(messages, max_bytes=262144))
    # Then the oversized one is alone and marked for S3; the small ones share a batch
    assert [[m.chunk for m in b] for b in batches] == [[1], [0, 2]]
    assert oversized(batches[0], 262144) and not oversized(batches[1], 262144)


def test_attribute_bytes_count_towards_the_size():
    attributes = {"mailctl.job_id": {"DataType": "String", "StringValue": "job-1"}}
    assert attributes_size(attributes) == len("mailctl.job_id") + len("String") + len("job-1")
    assert Outgoing(0, "abc", attributes, 1).size == 3 + attributes_size(attributes)
