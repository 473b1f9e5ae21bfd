"""hamq produce/consume: argument checks and the drain tally behind the JSON summary."""

import argparse

import pytest

from hamq.client.cli import DrainTally, add_arguments, main_consume, main_produce


def test_repeat_without_redelivered_flag_is_a_duplicate():
    tally = DrainTally()
    tally.add("ID:a:1", False, "0", 10.0)
    tally.add("ID:a:1", False, "0", 11.0)
    assert (tally.received, tally.deliveries, tally.duplicates, tally.redelivered_repeats) == (1, 2, 1, 0)


def test_repeat_with_redelivered_flag_is_allowed():
    tally = DrainTally()
    tally.add("ID:a:1", False, "0", 10.0)
    tally.add("ID:a:1", True, "0", 11.0)
    summary = tally.summary()
    assert summary["duplicates"] == 0 and summary["redelivered_repeats"] == 1 and summary["redelivered"] == 1


def test_first_delivery_flagged_redelivered_is_not_a_repeat():
    tally = DrainTally()
    tally.add("ID:a:1", True, "0", 10.0)
    assert tally.summary()["received"] == 1 and tally.redelivered_repeats == 0


def test_missing_counts_gaps_up_to_expect_or_highest_seen():
    tally = DrainTally()
    for n, seq in enumerate(["0", "2", "5"]):
        tally.add(f"ID:a:{n}", False, seq, 10.0 + n)
    assert tally.missing() == [1, 3, 4]
    assert tally.missing(expect=7) == [1, 3, 4, 6]
    summary = tally.summary(expect=7)
    assert summary["missing"] == 4 and summary["missing_seqs"] == [1, 3, 4, 6]
    assert summary["msgs_per_sec"] == 1.5  # 3 messages over 2 s
    assert DrainTally().summary(expect=2)["missing"] == 2


def test_non_numeric_seq_is_ignored():
    tally = DrainTally()
    tally.add("ID:x", False, "abc", 1.0)
    tally.add("ID:y", False, None, 2.0)
    assert tally.seqs == set() and tally.received == 2


def test_a_message_without_producer_identity_is_counted_apart():
    tally = DrainTally()
    tally.add("ID:a:1", False, "0", 1.0)
    tally.add(None, False, None, 2.0)
    tally.add(None, False, None, 3.0)
    summary = tally.summary()
    assert (summary["received"], summary["duplicates"], summary["unidentified"]) == (1, 0, 2)
    assert summary["deliveries"] == 3


def test_identity_prefers_client_message_id_then_the_producer_sequence():
    from hamq.client.cli import producer_identity

    assert producer_identity({"message-id": "b:1", "client-message-id": "ID:p:5", "hamq-seq": "5"}) == (
        "ID:p:5", "client-message-id")
    assert producer_identity({"message-id": "b:1", "hamq-run": "r1", "hamq-seq": "5"}) == ("r1:5", "hamq-seq")
    # The broker's own message-id says nothing about what the producer sent.
    assert producer_identity({"message-id": "b:1"}) == (None, None)


def _parse(name, argv):
    parser = argparse.ArgumentParser(prog=f"hamq {name}")
    add_arguments(parser, name)
    return parser.parse_args(argv)


def test_produce_requires_positive_count(capsys):
    with pytest.raises(SystemExit):
        _parse("produce", ["tcp://h:1", "/queue/q", "--count", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_consume_defaults():
    args = _parse("consume", ["tcp://h:1", "/queue/q"])
    assert (args.ack, args.timeout, args.count, args.expect) == ("client-individual", 10.0, None, None)


@pytest.mark.parametrize("main, name", [(main_produce, "produce"), (main_consume, "consume")])
def test_bad_url_is_exit_2_with_the_fix(main, name, capsys):
    extra = ["--count", "1"] if name == "produce" else []
    rc = main(_parse(name, ["failover:(tcp://h:1)?randomise=true", "/queue/q"] + extra))
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'randomize'" in err


def test_produce_rate_defaults_to_unlimited_and_refuses_negative(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser, "produce")
    args = parser.parse_args(["tcp://127.0.0.1:1", "/queue/q", "--count", "5"])
    assert args.rate == 0
    args = parser.parse_args(["tcp://127.0.0.1:1", "/queue/q", "--count", "5", "--rate", "250"])
    assert args.rate == 250
    with pytest.raises(SystemExit):
        parser.parse_args(["tcp://127.0.0.1:1", "/queue/q", "--count", "5", "--rate", "-3"])
    assert "must be 0 or more" in capsys.readouterr().err
