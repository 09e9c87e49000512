#!/usr/bin/env python3
"""gen_chat_convs.py — deterministic chat conversations for the renderer tests.

Writes tests/data/chat_convs.json: a list of
  {"name", "request": JSON text, "oracle_request": JSON text (optional),
   "node": bool, "jinja2": {"ok": bool, "text" | "error"}}
- request: what glmlite's chat_render receives (JSON text, so that number
  spellings like 1.50 and duplicate keys reach the C side untouched).
- oracle_request: the same conversation as the template needs it, where the
  request uses a glmlite extension (tool-call arguments as a JSON string).
- node: whether @huggingface/jinja (tests/node/render_chat.mjs) has the same
  semantics as jinja2 for this case (see that script's header for the gaps).
- jinja2: the render by jinja2 set up as transformers does
  (ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, loopcontrols),
  tojson = json.dumps(ensure_ascii=False)); content null renders "None" here,
  so the C test compares this with CHAT_RENDER_EXACT.

jinja2 is needed only to regenerate (python3 -m pip install jinja2==3.1.6 or
Debian python3-jinja2); the conversations themselves come from random.Random(7).
usage: python3 tools/gen_chat_convs.py [OUT]
"""
import json
import random
import sys

TEMPLATE = "/work/shared/data/glm-4.7-flash/chat_template.jinja"

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
CALC = {"type": "function", "function": {"name": "calc", "description": "Évalue une expression — 计算",
        "parameters": {"type": "object", "properties": {"expr": {"type": "string"}, "precision": {"type": "integer", "minimum": 0, "maximum": 12},
                       "scale": {"type": "number", "default": 0.25}, "exact": {"type": "boolean"}}, "required": ["expr"]}}}
NOARGS = {"type": "function", "function": {"name": "now", "description": "Current time, \"UTC\"\n(no args)", "parameters": {"type": "object", "properties": {}}}}
TOOLSETS = [[WEATHER], [WEATHER, CALC], [CALC, NOARGS], [NOARGS]]

TEXTS = ["Hello", "What's the weather in Paris?", "café 中文 🚀\nnew line", "  padded with spaces  ", "\n\nleading newlines",
         "trailing newlines\n\n", "tabs\tand\ttabs", "\u3000ideographic space\u3000", "\xa0nbsp\xa0", "quote \" and \\ backslash",
         "<b>html</b> & <i>amp</i>", "a" * 50, "multi\nline\ntext", "", " ", "emoji 😀👍🏽", "x", "Ünïcödé ñ", "日本語のテキスト", "\u2028sep\u2029",
         "\x1cfile sep\x1f", "\ufeffbom", "\u200bzero width"]
REASONS = ["The user greets me.", "  Need the weather tool.  ", "\nmulti\nline\nreasoning\n", "", " ", "Think: 2+2=4 → 4",
           "思考中…", "\n\n"]
VALUES = ["Paris", "", " spaced ", "ligne\nnouvelle", "naïve \"quote\"", 7, -3, 0, 1.5, -0.25, 3.14159, 2.5e-3, 123.456, True, False, None,
          ["a", "b"], [1, 2.5, "ü"], {"k": "v", "n": 1}, {"nested": {"deep": [True, None, "é"]}}, [], {}]


def maybe(rng, p):
    return rng.random() < p


def rand_content(rng, allow_null=True):
    r = rng.random()
    if r < 0.6:
        return rng.choice(TEXTS)
    if r < 0.85:
        parts = []
        for _ in range(rng.randint(0, 3)):
            k = rng.random()
            if k < 0.6:
                parts.append({"type": "text", "text": rng.choice(TEXTS)})
            elif k < 0.8:
                parts.append(rng.choice(TEXTS))
            else:
                parts.append({"type": "image_url", "image_url": {"url": "http://x/y.png"}})
        return parts
    return None if allow_null else ""


def rand_args(rng):
    return {rng.choice(["city", "unit", "expr", "q", "n", "flag", "list", "obj", "clé", "ключ"]): rng.choice(VALUES)
            for _ in range(rng.randint(0, 3))}


def rand_call(rng, wrap=True):
    fn = {"name": rng.choice(["get_weather", "calc", "now", "search_web"]), "arguments": rand_args(rng)}
    return {"type": "function", "function": fn} if wrap else fn


def rand_assistant(rng):
    m = {"role": "assistant"}
    style = rng.random()
    if style < 0.35:
        m["content"] = rng.choice(TEXTS)
        m["reasoning_content"] = rng.choice(REASONS)
    elif style < 0.6:
        pre = rng.choice(["<think>", "<think>\n", "", "<think><think>"])
        post = rng.choice(["</think>", "</think>\n\n", "\n</think>\n"])
        m["content"] = pre + rng.choice(REASONS) + post + rng.choice(TEXTS)
    elif style < 0.8:
        m["content"] = rand_content(rng)
    else:
        pass  # no content key
    if maybe(rng, 0.4):
        m["tool_calls"] = [rand_call(rng, maybe(rng, 0.85)) for _ in range(rng.randint(1, 3))]
    return m


def rand_conversation(rng):
    msgs = []
    if maybe(rng, 0.5):
        msgs.append({"role": "system", "content": rand_content(rng, False)})
    for _ in range(rng.randint(1, 4)):
        msgs.append({"role": "user", "content": rand_content(rng, False)})
        a = rand_assistant(rng)
        msgs.append(a)
        if a.get("tool_calls"):
            for _ in range(len(a["tool_calls"])):
                msgs.append({"role": "tool", "content": rng.choice(["21C", "{\"temp\": 21}", "", "ok\n", "ü"])})
            if maybe(rng, 0.6):
                msgs.append(rand_assistant(rng))
    if maybe(rng, 0.5):
        msgs.pop()  # end on a user or tool message
    req = {"messages": msgs}
    if maybe(rng, 0.5):
        req["tools"] = rng.choice(TOOLSETS)
    req["add_generation_prompt"] = maybe(rng, 0.7)
    for k in ("enable_thinking", "clear_thinking"):
        if maybe(rng, 0.4):
            req[k] = maybe(rng, 0.5)
    return req


def node_compatible(req):
    """False where @huggingface/jinja cannot agree with jinja2 (see render_chat.mjs)."""
    def bad_value(v, printed):
        if v is None:
            return printed
        if isinstance(v, float):
            return v == int(v) or not (1e-4 <= abs(v) < 1e16)
        if isinstance(v, int) and not isinstance(v, bool):
            return abs(v) > 2**53
        if isinstance(v, list):
            return printed or any(bad_value(x, False) for x in v)
        if isinstance(v, dict):
            return printed or any(k.isdigit() for k in v) or any(bad_value(x, False) for x in v.values())
        return False
    for t in req.get("tools") or []:
        if bad_value(t, False):
            return False
    absent = object()
    for m in req["messages"]:
        c = m.get("content", absent)
        if m["role"] == "tool":
            if not isinstance(c, str) and not isinstance(c, list):
                return False
            if isinstance(c, list):
                for tr in c:
                    o = tr.get("output") if isinstance(tr, dict) and "output" in tr else tr
                    if not isinstance(o, str):
                        return False
        elif not isinstance(c, (str, list)) and c is not absent and c is not None:
            return False
        if isinstance(c, list):
            for it in c:
                if isinstance(it, dict) and it.get("type") == "text" and not isinstance(it.get("text"), str):
                    return False
        for tc in m.get("tool_calls") or []:
            f = tc.get("function") or tc
            a = f.get("arguments")
            if isinstance(a, str):
                a = json.loads(a) if a.strip() else {}
            if any(k.isdigit() for k in a) or any(bad_value(v, False) for v in a.values()):
                return False
    return True


def handmade():
    U = lambda c: {"role": "user", "content": c}
    A = lambda **kw: dict(role="assistant", **kw)
    T = lambda c: {"role": "tool", "content": c}
    call = lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}}
    cases = [
        ("tools-think-on", {"tools": [WEATHER], "messages": [{"role": "system", "content": "You are a helpful assistant."}, U("What's the weather in Paris?")], "add_generation_prompt": True}),
        ("tools-think-off", {"tools": [WEATHER, CALC], "messages": [U("2+2?")], "add_generation_prompt": True, "enable_thinking": False}),
        ("think-on-explicit", {"messages": [U("hi")], "add_generation_prompt": True, "enable_thinking": True}),
        ("empty-tools-list", {"tools": [], "messages": [U("hi")], "add_generation_prompt": True}),
        ("no-user-messages", {"messages": [{"role": "system", "content": "sys"}, A(content="x", reasoning_content="kept: no user")], "add_generation_prompt": False}),
        ("clear-thinking-true", {"messages": [U("a"), A(content="b", reasoning_content="r1"), U("c"), A(content="d", reasoning_content="r2")], "clear_thinking": True}),
        ("clear-thinking-false-multi", {"messages": [U("a"), A(content="b", reasoning_content="r1"), U("c"), A(content="<think>r2</think>d")], "clear_thinking": False, "add_generation_prompt": True}),
        ("tool-loop-keeps-reasoning", {"tools": [WEATHER], "messages": [U("Paris and Rome?"), A(content="", reasoning_content="call both", tool_calls=[call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Rome", "unit": "celsius"})]), T("21C"), T("25C"), A(content="Both mild.", reasoning_content="summarise")], "add_generation_prompt": True}),
        ("tool-first-message", {"messages": [T("orphan"), T("second"), U("hi")]}),
        ("tool-between-users", {"messages": [U("a"), T("r1"), U("b"), T("r2"), T("r3")]}),
        ("tool-list-content", {"messages": [U("a"), A(content="", tool_calls=[call("now", {})]), {"role": "tool", "content": [{"output": "12:00"}, "plain", {"output": "ü"}]}]}),
        ("tool-list-dicts", {"messages": [U("a"), {"role": "tool", "content": [{"name": "x", "value": 1}, {"output": 5}, {"output": None}, 3.5, None, ["l", 1]]}]}),
        ("tool-dict-content", {"messages": [U("a"), {"role": "tool", "content": {"k1": 1, "k2": 2}}]}),
        ("tool-absent-content", {"messages": [U("a"), {"role": "tool"}]}),
        ("tool-empty-list", {"messages": [U("a"), {"role": "tool", "content": []}]}),
        ("inline-think-multi", {"messages": [U("q"), A(content="<think>a<think>\nb\n\n</think>\nmid</think>\n\nend")]}),
        ("inline-think-space-reasoning", {"messages": [U("q"), A(content="<think> </think>answer")]}),
        ("inline-think-no-open", {"messages": [U("q"), A(content="\nreason only\n</think>answer ")]}),
        ("inline-think-list-content", {"messages": [U("q"), A(content=[{"type": "text", "text": "<think>r"}, {"type": "text", "text": "</think>c"}])]}),
        ("reasoning-empty-string", {"messages": [U("q"), A(content="<think>r</think>c", reasoning_content="")]}),
        ("reasoning-null", {"messages": [U("q"), A(content="<think>r</think>c", reasoning_content=None)]}),
        ("reasoning-number", {"messages": [U("q"), A(content="c", reasoning_content=5)]}),
        ("content-whitespace-only", {"messages": [U("q"), A(content=" \n\t ", reasoning_content=" \n ")]}),
        ("content-unicode-spaces", {"messages": [U("q"), A(content="\u3000\xa0\x1c x \x85\u2029", reasoning_content="\u2003r\u205f")]}),
        ("content-bom-not-stripped", {"messages": [U("q"), A(content="\ufeffx\ufeff")]}),
        ("null-content-with-calls", {"messages": [U("q"), A(content=None, tool_calls=[call("now", {})])]}),
        ("null-user-content", {"messages": [U(None), {"role": "system", "content": None}]}),
        ("absent-content", {"messages": [{"role": "user"}, A()]}),
        ("calls-unwrapped", {"messages": [U("q"), A(content="c", tool_calls=[{"name": "now", "arguments": {}}, {"function": {}, "name": "x", "arguments": {"a": 1}}])]}),
        ("args-non-string", {"messages": [U("q"), A(content="", tool_calls=[call("f", {"i": 7, "f": 1.5, "b": True, "n": None, "l": [1, "two", [3]], "d": {"é": "ü", "q": "\"\n"}, "e": {}, "el": []})])]}),
        ("args-string-extension", {"messages": [U("q"), A(content="", tool_calls=[call("get_weather", "{\"city\": \"Paris\", \"n\": 2}")])]}),
        ("args-blank-string", {"messages": [U("q"), A(content="", tool_calls=[call("now", "  ")])]}),
        ("list-content-mixed", {"messages": [U([{"type": "text", "text": "A"}, "B", {"type": "image"}, 5, None, {"type": "text"}, {"type": "text", "text": 3}]), {"role": "system", "content": []}]}),
        ("dict-content", {"messages": [U({"a": 1, "b": "it's"}), {"role": "system", "content": 2.0}, {"role": "user", "content": True}]}),
        ("empty-everything", {"messages": [U(""), A(content="", reasoning_content=""), T("")], "add_generation_prompt": True}),
        ("system-mid", {"messages": [U("a"), {"role": "system", "content": "mid"}, U("b")], "add_generation_prompt": True}),
    ]
    out = [(n, json.dumps(r, ensure_ascii=False)) for n, r in cases]
    # Spellings json.loads normalises (floats, -0, big ints, duplicate keys,
    # integer-like keys): only jinja2 can judge these.
    out.append(("numbers-python-repr", '{"tools": [{"type": "function", "function": {"name": "n", "parameters": {"a": 1.50, "b": 1e5, "c": -0, "d": 1E-7, "e": 12345678901234567890, "f": 0.1, "g": 1e16, "h": 1e15, "i": 0.0001, "j": 0.00001, "k": -2.5E+300, "l": 1e400, "m": 5e-324, "o": 0.30000000000000004, "p": -0.0, "q": 100, "r": 1.0}}}], "messages": [{"role": "user", "content": "n"}]}'))
    out.append(("args-python-repr", '{"messages": [{"role": "user", "content": "n"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 2.50, "b": 1e3, "c": [1.0, -0, 7E2], "d": {"x": 1e-9}}}}]}]}'))
    out.append(("duplicate-keys", '{"messages": [{"role": "user", "content": "a", "content": "b"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"k": 1, "j": 2, "k": 3}}}]}], "tools": [{"x": 1, "y": 2, "x": {"z": 1, "z": 2}}]}'))
    out.append(("integer-like-keys", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "2": 2, "1": 3}}}]}], "tools": [{"b": 0, "10": 1}]}'))
    out.append(("repr-strings", '{"messages": [{"role": "user", "content": {"s": "it\'s", "d": "say \\"hi\\"", "both": "\'\\"", "ctl": "\\u0001\\n\\t\\\\", "u": "é\\u00a0\\u200b😀", "del": "\\u007f"}}]}'))
    return out


def transformers_env():
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.ext import loopcontrols

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    return env.from_string(open(TEMPLATE, encoding="utf-8").read())


def render_jinja2(tmpl, req_text):
    req = json.loads(req_text)
    kw = {k: req[k] for k in ("enable_thinking", "clear_thinking") if k in req and req[k] is not None}
    try:
        return {"ok": True, "text": tmpl.render(messages=req["messages"], tools=req.get("tools"),
                                                add_generation_prompt=req.get("add_generation_prompt") or False, **kw)}
    except Exception as e:  # the template fails on some inputs; the C side must report an error there
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/chat_convs.json"
    tmpl = transformers_env()
    rng = random.Random(7)
    items = handmade()
    for i in range(90):
        items.append((f"random-{i:03d}", json.dumps(rand_conversation(rng), ensure_ascii=False)))
    vecs = []
    for name, req_text in items:
        req = json.loads(req_text)
        v = {"name": name, "request": req_text}
        oracle = json.loads(req_text)
        changed = False
        for m in oracle["messages"]:
            for tc in m.get("tool_calls") or []:
                f = tc.get("function") or tc
                if isinstance(f.get("arguments"), str):
                    s = f["arguments"]
                    f["arguments"] = json.loads(s) if s.strip() else {}
                    changed = True
        if changed:
            v["oracle_request"] = json.dumps(oracle, ensure_ascii=False)
        v["node"] = node_compatible(req) and "duplicate" not in name and "python" not in name and "integer-like" not in name and "repr" not in name
        v["jinja2"] = render_jinja2(tmpl, v.get("oracle_request", req_text))
        vecs.append(v)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(vecs, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(vecs)} conversations, {sum(v['node'] for v in vecs)} node-comparable, "
          f"{sum(not v['jinja2']['ok'] for v in vecs)} template errors -> {out_path}")


if __name__ == "__main__":
    main()
