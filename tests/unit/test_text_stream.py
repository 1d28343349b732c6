from predictor.backends.text_stream import StopTextStream


def feed_all(stream: StopTextStream, pieces: list[bytes]) -> str:
    return "".join(stream.feed(piece) for piece in pieces) + stream.flush()


def test_without_stop_sequences_text_passes_through():
    assert feed_all(StopTextStream(), [b"Hello", b", ", b"world"]) == "Hello, world"


def test_utf8_character_split_across_tokens_is_not_mangled():
    euro = "€".encode()  # three bytes
    stream = StopTextStream()
    assert stream.feed(euro[:1]) == ""
    assert stream.feed(euro[1:2]) == ""
    assert stream.feed(euro[2:] + b"!") == "€!"


def test_stop_sequence_inside_a_token_cuts_the_text_before_it():
    stream = StopTextStream(("END",))
    assert feed_all(stream, [b"abc END def"]) == "abc "
    assert stream.stopped


def test_stop_sequence_spanning_tokens_is_held_back_then_dropped():
    stream = StopTextStream(("<|stop|>",))
    sent = [stream.feed(p) for p in [b"one <|", b"sto", b"p|> two"]]
    assert sent == ["one ", "", ""]
    assert stream.stopped
    assert stream.flush() == ""


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop():
    stream = StopTextStream(("STOP",))
    assert stream.feed(b"ST") == ""
    assert stream.feed(b"ART") == "START"
    assert not stream.stopped


def test_earliest_of_several_stop_sequences_wins():
    assert feed_all(StopTextStream(("b", "a")), [b"xxabyy"]) == "xx"


def test_pieces_after_a_stop_are_ignored():
    stream = StopTextStream(("!",))
    stream.feed(b"hi!")
    assert stream.feed(b"more") == ""


def test_unfinished_utf8_at_the_end_becomes_a_replacement_character():
    assert feed_all(StopTextStream(), [b"ok", "€".encode()[:2]]) == "ok\ufffd"
