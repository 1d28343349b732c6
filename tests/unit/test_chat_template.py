import time

import pytest

from predictor.backends.chat_template import ChatTemplate, ChatTemplateError

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_renders_messages_and_the_generation_prompt():
    text = ChatTemplate(CHATML).render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_bos_and_eos_tokens_are_available_to_the_template():
    template = ChatTemplate(
        "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert template.render([{"role": "user", "content": "x"}]) == "<s>x</s>"


def test_raise_exception_in_a_template_becomes_a_chat_template_error():
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="must start with user"):
        template.render([{"role": "assistant", "content": "x"}])


@pytest.mark.parametrize(
    "payload",
    [
        # CVE-2024-34359 style: walk from a string to os via Python internals.
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self.__init__.__globals__['os'].system('touch /tmp/kzero-pwned') }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_injection_payloads_cannot_reach_python_internals(payload: str):
    with pytest.raises(ChatTemplateError):
        ChatTemplate(payload).render([{"role": "user", "content": "x"}])


def test_templates_cannot_mutate_the_messages_they_are_given():
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages.append({'role': 'system'}) }}").render(messages)
    assert messages == [{"role": "user", "content": "x"}]


def test_a_template_that_does_not_compile_is_reported():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}")


# --- more injection payloads: all refused or rendered harmlessly ---------------


@pytest.mark.parametrize(
    "payload",
    [
        # Function globals reached from the globals Jinja itself provides.
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ raise_exception.__globals__['__builtins__']['__import__']('os') }}",
        "{{ namespace.__init__.__globals__.os.system('id') }}",
        # The attr filter and getitem are checked like dotted access.
        "{{ (messages | attr('__class__')).__mro__ }}",
        "{{ messages['__class__']['__mro__'] }}",
        # str.format walks attributes itself: the sandbox formatter checks them too.
        "{{ '{0.__class__.__mro__}'.format(messages) }}",
    ],
)
def test_more_injection_payloads_are_refused(payload: str, tmp_path):
    with pytest.raises(ChatTemplateError):
        ChatTemplate(payload).render([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("call", ["os.system", "os.popen"])
def test_shell_payloads_run_nothing(call: str, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"{{{{ cycler.__init__.__globals__.{call}('touch {marker}') }}}}"
    with pytest.raises(ChatTemplateError):
        ChatTemplate(payload).render([{"role": "user", "content": "x"}])
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload", ["[{{ ''.__class__ }}]", "[{{ '{0.__globals__}'.format(raise_exception) }}]"]
)
def test_a_private_attribute_alone_renders_as_nothing(payload: str):
    # Harmless: the sandbox answers with an empty undefined, not the object.
    assert ChatTemplate(payload).render([]) == "[]"


@pytest.mark.parametrize(
    "payload",
    [
        "{{ messages[0].update({'role': 'system'}) }}",
        "{{ messages[0].clear() }}",
        "{% set _ = messages.pop() %}",
        "{{ messages.insert(0, {'role': 'system', 'content': 'obey'}) }}",
    ],
)
def test_templates_cannot_mutate_messages_in_any_way(payload: str):
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(ChatTemplateError):
        ChatTemplate(payload).render(messages)
    assert messages == [{"role": "user", "content": "x"}]


def test_template_syntax_in_message_content_is_not_evaluated():
    text = ChatTemplate(CHATML).render([{"role": "user", "content": "{{ 7 * 7 }}{% raw %}"}])
    assert "{{ 7 * 7 }}{% raw %}" in text
    assert "49" not in text


# --- resource bombs: refused quickly instead of eating the pod's memory --------


@pytest.mark.parametrize(
    "payload",
    [
        "{{ 'x' * 10**12 }}",
        "{{ [0] * 10**9 }}",
        # Jinja's ** is left-associative: 10 ** 10 ** 9 would be the harmless (10**10)**9.
        "{{ 10 ** (10 ** 9) }}",
        "{{ range(10**9) | list }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    ],
)
def test_resource_bombs_fail_fast_with_a_chat_template_error(payload: str):
    started = time.perf_counter()
    # Compiling must not go off either: bounded operators are never constant-folded.
    template = ChatTemplate(payload)
    with pytest.raises(ChatTemplateError):
        template.render([{"role": "user", "content": "x"}])
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    "payload", ["{{ 1 + 'a' }}", "{{ 1 / 0 }}", "{{ (messages | first)['content'] // 0 }}"]
)
def test_runtime_errors_in_a_template_become_chat_template_errors(payload: str):
    # A 400 with the reason, never a 500 with a traceback.
    with pytest.raises(ChatTemplateError, match="chat template failed"):
        ChatTemplate(payload).render([{"role": "user", "content": "12"}])


def test_ordinary_repetition_and_powers_still_work():
    assert ChatTemplate("{{ '-' * 3 }}{{ 2 ** 10 }}{{ [1] * 2 }}").render([]) == "---1024[1, 1]"


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_render_parts_tells_contents_from_what_the_template_wrote():
    parts = ChatTemplate(CHATML).render_parts(
        [{"role": "user", "content": "a <|im_end|> b"}, {"role": "assistant", "content": ""}]
    )
    assert parts == [
        ("<|im_start|>user\n", False),
        ("a <|im_end|> b", True),
        ("<|im_end|>\n<|im_start|>assistant\n", False),
        ("", True),
        ("<|im_end|>\n<|im_start|>assistant\n", False),
    ]


def test_render_parts_cannot_be_fooled_by_content_that_looks_like_a_marker():
    content = "\x00deadbeefdeadbeef:0\x00"
    parts = ChatTemplate(CHATML).render_parts([{"role": "user", "content": content}])
    assert (content, True) in parts and len([p for p in parts if p[1]]) == 1


def test_render_parts_gives_up_when_the_template_rewrites_contents():
    assert (
        ChatTemplate("{{ messages[0].content | upper }}").render_parts(
            [{"role": "user", "content": "x"}]
        )
        == []
    )


def test_render_parts_gives_up_when_the_output_depends_on_a_content():
    branching = ChatTemplate(
        "{% for m in messages %}{% if m.content == 'x' %}[x]{% endif %}{{ m.content }}{% endfor %}"
    )
    assert branching.render_parts([{"role": "user", "content": "x"}]) == []
    assert branching.render_parts([{"role": "user", "content": "y"}]) == [("y", True)]


def test_render_parts_runs_the_template_on_the_real_contents():
    refusing = ChatTemplate(
        "{% if messages[0].content == 'bad' %}{{ raise_exception('no') }}{% endif %}{{ messages[0].content }}"
    )
    with pytest.raises(ChatTemplateError, match="no"):
        refusing.render_parts([{"role": "user", "content": "bad"}])
