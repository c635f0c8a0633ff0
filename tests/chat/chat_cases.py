"""Chat-template test cases shared by compare_with_jinja2.py and make_goldens.py.

Each case: {"name", "template" (a file our renderer loads: tokenizer_config.json, .gguf or
.jinja), "messages", "add_generation_prompt", "extra"}. Cases deliberately include inputs that
make the templates raise (raise_exception, str + int), which must fail in both engines.
"""
import os

SOURCE_DIR = os.environ.get("ITE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED_DIR = os.environ.get("ITE_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
FIXTURES = os.path.join(SOURCE_DIR, "tests", "chat", "templates")

LONG = ("The quick brown fox jumps over the lazy dog. " * 400).strip()

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location — with “quotes” & <tags>",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1.0},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Search the web. 検索",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "top_k": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            "filters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                         "b": {"type": "string"}}},
            "raw": {}}, "required": ["query"]},
    },
}


def call(name, arguments, wrap=True):
    fn = {"name": name, "arguments": arguments}
    return {"type": "function", "function": fn} if wrap else fn


PLAIN = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "system", "content": "Be concise."},
                   {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Tell me a joke."}],
    "no_system_multi": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
                        {"role": "user", "content": "three"}, {"role": "assistant", "content": "four"},
                        {"role": "user", "content": "five"}],
    "ends_with_assistant": [{"role": "user", "content": "Ping"},
                            {"role": "assistant", "content": "Pong"}],
    "unicode": [{"role": "system", "content": "Réponds en français. 日本語も可。"},
                {"role": "user", "content": "Ça va? 🙂👍🏽 مرحبا עברית ﷺ e\u0301 \u00a0nbsp\u2028sep"}],
    "empty_content": [{"role": "user", "content": ""}],
    "empty_assistant": [{"role": "user", "content": "Say nothing"},
                        {"role": "assistant", "content": ""},
                        {"role": "user", "content": "Thanks"}],
    "special_chars": [{"role": "user", "content":
                       "Quotes ' \" backslash \\ braces {{ x }} {% if %} {# c #} tags <|im_start|>"
                       "<|eot_id|> </s> tab\tnewline\nCR\r\nnull-ish None True"}],
    "whitespace_padding": [{"role": "system", "content": "  \n sys with spaces \n\n"},
                           {"role": "user", "content": "\n\n  padded question  \n"}],
    "long_message": [{"role": "user", "content": LONG}],
    "trailing_newlines": [{"role": "user", "content": "line1\nline2\n"},
                          {"role": "assistant", "content": "answer\n\n"},
                          {"role": "user", "content": "more"}],
    "none_fields": [{"role": "user", "content": "x", "name": None, "tool_calls": None}],
    "system_only": [{"role": "system", "content": "Only a system prompt."}],
    "developer_role": [{"role": "developer", "content": "dev instructions"},
                       {"role": "user", "content": "hi"}],
    "missing_content": [{"role": "user", "content": "q"}, {"role": "assistant"}],
    "int_content": [{"role": "user", "content": 42}],
    "thinking_in_content": [{"role": "user", "content": "Solve x+1=2"},
                            {"role": "assistant", "content": "<think>\nx = 2 - 1\n</think>\n\nx = 1"},
                            {"role": "user", "content": "And x+2=3?"}],
    "reasoning_field": [{"role": "user", "content": "Q1"},
                        {"role": "assistant", "content": "A1", "reasoning_content": "R1 thinking"},
                        {"role": "user", "content": "Q2"},
                        {"role": "assistant", "content": "A2", "reasoning": "R2 via alias"}],
    "non_alternating": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
}

TOOLS = {
    "tool_call_roundtrip": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("get_current_weather", {"location": "Paris, FR", "unit": "celsius", "days": 2})]},
        {"role": "tool", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21.5°C and clear in Paris."},
        {"role": "user", "content": "Thanks!"}],
    "tool_call_no_system": [
        {"role": "user", "content": "Search for jinja"},
        {"role": "assistant", "content": "Let me search.", "tool_calls": [
            call("search_web", {"query": "jinja2 whitespace", "top_k": 3})]},
        {"role": "tool", "content": "result one"}],
    "parallel_tool_calls": [
        {"role": "user", "content": "Weather in Paris and Rome"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("get_current_weather", {"location": "Paris"}),
            call("get_current_weather", {"location": "Rome", "unit": "fahrenheit"})]},
        {"role": "tool", "content": "18C"},
        {"role": "tool", "content": "25C"},
        {"role": "user", "content": "Which is warmer?"}],
    "string_arguments": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("search_web", "{\"query\": \"raw json string\"}", wrap=True)]},
        {"role": "tool", "content": "ok"}],
    "unwrapped_call_numbers": [
        {"role": "user", "content": "nums"},
        {"role": "assistant", "content": "", "tool_calls": [
            call("search_web", {"query": "floats", "vals": [1.0, 1e-07, 1e22, -0.5, 3, True, None],
                                "nested": {"z": 1, "a": {"é": "ü"}}}, wrap=False)]},
        {"role": "tool", "content": "done"}],
    "ipython_dict_result": [
        {"role": "user", "content": "Use the tool"},
        {"role": "assistant", "tool_calls": [call("get_current_weather", {"location": "Oslo"})]},
        {"role": "ipython", "content": {"temp": -3, "unit": "C"}},
        {"role": "user", "content": "ok"}],
    "tool_response_wrapped_user": [
        {"role": "user", "content": "<tool_response>\nnot a real query\n</tool_response>"},
        {"role": "assistant", "content": "<think>hmm</think>answer"}],
}

LLAVA = {
    "image_and_text": [{"role": "user", "content": [{"type": "image"},
                                                    {"type": "text", "text": "What is shown?"}]}],
    "multi_turn_images": [
        {"role": "system", "content": [{"type": "text", "text": "Describe images."}]},
        {"role": "user", "content": [{"type": "text", "text": "First:"}, {"type": "image"},
                                     {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Two cats."}]},
        {"role": "user", "content": [{"type": "text", "text": "Ünïcode? "}]}],
}

DATE = {"date_string": "03 Mar 2025"}
CONFIG_TEMPLATES = {
    "llama3": os.path.join(SHARED_DIR, "tokenizers", "llama3", "tokenizer_config.json"),
    "llama3_1": os.path.join(SHARED_DIR, "tokenizers", "llama3_1", "tokenizer_config.json"),
    "qwen3": os.path.join(SHARED_DIR, "tokenizers", "qwen3", "tokenizer_config.json"),
}
JINJA_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
LLAMA_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}


def fixture(name):
    return os.path.join(FIXTURES, name)


def all_cases(gguf_path):
    cases = []

    def add(prefix, template, convs, extras=({},), prompts=(True, False)):
        for conv_name, messages in convs.items():
            for i, extra in enumerate(extras):
                for agp in prompts:
                    cases.append({
                        "name": f"{prefix}/{conv_name}/x{i}/{'gen' if agp else 'nogen'}",
                        "template": template, "messages": messages,
                        "add_generation_prompt": agp, "extra": extra})

    for name, path in CONFIG_TEMPLATES.items():
        add(name, path, PLAIN)
    add("qwen3", CONFIG_TEMPLATES["qwen3"], TOOLS,
        extras=({"tools": [WEATHER_TOOL, SEARCH_TOOL]}, {}))
    add("qwen3", CONFIG_TEMPLATES["qwen3"],
        {k: PLAIN[k] for k in ("single_user", "thinking_in_content", "reasoning_field")},
        extras=({"enable_thinking": False}, {"enable_thinking": True}))
    if gguf_path:
        add("smollm2_gguf", gguf_path, PLAIN)
    add("qwen2_5", fixture("qwen2_5.jinja"), PLAIN, extras=(JINJA_TOKENS,))
    add("qwen2_5", fixture("qwen2_5.jinja"), TOOLS,
        extras=(dict(JINJA_TOKENS, tools=[WEATHER_TOOL, SEARCH_TOOL]),))
    add("vicuna", fixture("vicuna.jinja"), PLAIN, extras=(JINJA_TOKENS,))
    add("llava_1_5", fixture("llava_1_5.jinja"), LLAVA, extras=(JINJA_TOKENS,))
    add("llama3_1_tools", fixture("llama3_1_tools.jinja"), PLAIN, extras=(LLAMA_TOKENS,))
    add("llama3_1_tools", fixture("llama3_1_tools.jinja"), TOOLS, extras=(
        dict(LLAMA_TOKENS, tools=[WEATHER_TOOL, SEARCH_TOOL], **DATE),
        dict(LLAMA_TOKENS, tools=[WEATHER_TOOL], tools_in_user_message=False),
        dict(LLAMA_TOKENS, builtin_tools=["get_current_weather", "code_interpreter"], **DATE),
        dict(LLAMA_TOKENS, custom_tools=[SEARCH_TOOL])))
    add("hermes_style_tools", fixture("hermes_style_tools.jinja"), TOOLS,
        extras=(dict(JINJA_TOKENS, tools=[WEATHER_TOOL, SEARCH_TOOL]), JINJA_TOKENS))
    add("hermes_style_tools", fixture("hermes_style_tools.jinja"),
        {k: PLAIN[k] for k in ("single_user", "multi_turn", "special_chars", "unicode")},
        extras=(JINJA_TOKENS,))
    add("features", fixture("features.jinja"), PLAIN, extras=(JINJA_TOKENS,), prompts=(True,))
    return cases
