#!/usr/bin/env python3
"""Writes corpus.jsonl: >= 2,000 varied strings (one JSON string per line) for comparing
ite-tokenize with Hugging Face `tokenizers`. Deterministic (fixed seed, no I/O besides the output),
so re-running it reproduces the committed file byte for byte.

Usage: make_corpus.py [OUT]     (default: corpus.jsonl beside this script)
       make_corpus.py --check   (exit 1 if the committed corpus.jsonl differs from the script's)
"""
import json
import os
import random
import sys
import unicodedata

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>",
            "<unk>", "<think>", "</think>", "<tool_call>", "<|reserved_special_token_5|>",
            "<|fim_prefix|>", "<repo_name>", "<|im_start|", "<|im_sta", "< s>"]

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "tokenizer", "inference",
         "Hello", "WORLD", "CamelCaseIdentifier", "snake_case_name", "naïve", "café", "résumé",
         "über", "straße", "Ærøskøbing", "façade", "coöperate", "jalapeño", "piñata", "mañana",
         "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", "a",
         "I", "don't", "we'll", "they're", "it's", "you've", "I'm", "she'd", "IT'S", "We'LL",
         "O'Neil", "rock'n'roll", "’s", "l’été", "ſ", "ﬁ", "ﬀ", "Ⅻ", "½", "²", "①"]

SCRIPTS = ["日本語のテキストです。", "中文分词测试，包括标点符号！", "한국어 문장입니다.",
           "Привет, как дела?", "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם",
           "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu", "ქართული ენა", "Հայերեն",
           "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙", "カタカナ・ひらがな", "漢字かな交じり文",
           "繁體中文與簡體中文", "ﾊﾝｶｸｶﾀｶﾅ", "Ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ"]

EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "1️⃣", "❤️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨",
         "🤷‍♀️", "🐈‍⬛", "✨", "🔥🔥🔥", "☕", "©", "™", "↔", "∑∫√∞", "→⇒⟹"]

CODE = [
    "def f(x):\n    return x ** 2 + 1\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "#include <vector>\nint main() { std::vector<int> v{1, 2, 3}; return v.size(); }",
    '{"key": "value", "list": [1, 2.5, -3e10, null, true], "nested": {"a": {}}}',
    "<html><body class=\"x\"><p>Text &amp; more</p></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' > out.txt 2>&1",
    "const f = async (a, b) => { await g?.(a ?? b); };",
    "fn main() -> Result<(), Box<dyn Error>> { println!(\"{:?}\", x); Ok(()) }",
    "    if x:\n        pass\n    else:\n\t\treturn None  \n",
    "x+=1;y-=2;z*=3;w/=4;v%=5;u<<=6;t>>=7;s&=8;r|=9;q^=10",
    "// comment with trailing spaces   \n/* block */\n",
    "https://example.com/path?query=1&other=two#frag",
    "user@example.org, +1 (555) 123-4567, 192.168.0.1:8080",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "```python\nprint('hi')\n```",
    "a\r\nb\r\n\r\nc\rd",
]

WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n ",
              "\u00a0", "\u3000", "\u2009", "\u200b", "\u2028", "\u000b", "\u000c", " \t \n",
              "        "]

PUNCT = ["!", "?", "...", "…", "—", "–", "-", "--", "(", ")", "[", "]", "{", "}", "\"", "'",
         "«»", "“”", "‘’", "¿¡", "。", "、", "！", "？", "@#$%^&*", ":-)", ";;", ",,", "::",
         "->", "=>", "!=", "===", "<<<", ">>>", "/", "\\", "|", "~", "`", "_", "__init__"]


def numbers(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 20)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(0, 8)}f}"
    if kind == 2:
        return f"{rng.randrange(10**9):,}"
    if kind == 3:
        return f"{rng.random():.3e}"
    if kind == 4:
        return "0x" + format(rng.randrange(1 << 32), "X")
    if kind == 5:
        return "٠١٢٣٤٥٦٧٨٩"[: rng.randrange(1, 10)]  # Arabic-Indic digits
    if kind == 6:
        return f"{rng.randrange(1, 13)}/{rng.randrange(1, 29)}/{rng.randrange(1900, 2100)}"
    return "v" + ".".join(str(rng.randrange(100)) for _ in range(3))


def fragment(rng):
    pools = [WORDS, WORDS, WORDS, SCRIPTS, EMOJI, CODE, PUNCT, SPECIALS, WHITESPACE]
    pool = rng.choice(pools + ["num"])
    if pool == "num":
        return numbers(rng)
    return rng.choice(pool)


def random_string(rng):
    n = rng.randrange(1, 25)
    parts = []
    for _ in range(n):
        parts.append(fragment(rng))
        parts.append(rng.choice([" ", " ", " ", "", "\n", "  ", "\t", ", ", ". "]))
    s = "".join(parts)
    r = rng.random()
    if r < 0.1:
        s = unicodedata.normalize("NFD", s)
    elif r < 0.15:
        s = s.upper()
    elif r < 0.2:
        s = s.rstrip() + rng.choice(["   ", "\n", " \n\n", "\t"])
    elif r < 0.25:
        s = rng.choice(["  ", "\n", " ", "\t"]) + s
    return s


def random_unicode(rng):
    # Code points from many blocks (no surrogates, no noncharacter-only oddities).
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F),
              (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
              (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0x0300, 0x036F)]
    out = []
    for _ in range(rng.randrange(1, 40)):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randrange(lo, hi + 1)))
    return "".join(out)


def handwritten():
    base = [
        "", " ", "  ", "\n", "\t", "a", "Hello world", " Hello world", "Hello world ",
        "Hello  world", "Hello\tworld", "Hello\nworld", "Hello\n\nworld\n", "   leading",
        "trailing   ", "\n\n\nstarts with newlines", "ends with newlines\n\n\n",
        "It's I'm you're we've they'll he'd DON'T", "'s 'll 're 've 'm 'd 't",
        "'S 'LL 'RE", "ſ 'ſ", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000",
        "-42", "+7", "2024-11-26T20:30:00Z", "a1b2c3", "x²+y²=z²", "e=mc²",
        "café café", unicodedata.normalize("NFD", "café naïve résumé"),
        unicodedata.normalize("NFD", "Ångström Ελληνικά"), "e\u0301", "\u0301", "\u0301\u0301abc",
        "👨‍👩‍👧", "👨\u200d", "\u200d", "🏳️‍🌈 flag", "keycap 1️⃣ #️⃣",
        "<|begin_of_text|>", "<|begin_of_text|><|begin_of_text|>",
        "<|begin_of_text|>Hello", "Hello<|end_of_text|>", " <|eot_id|> ",
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
        "<|im_start|>assistant\n<think>\n\n</think>\n\n", "<tool_call>{\"a\": 1}</tool_call>",
        "<s>", "</s>", "<s>Hello</s>", "Hello <s> world </s> !", "<unk>", "a<unk>b",
        "<|endoftext|>", "text<|endoftext|>more", "<|im_start", "im_start|>", "<<s>>",
        "<|reserved_special_token_0|>", "<|begin_of_text", "<|begin_of_text|", "<|",
        "a" * 300, "ab" * 200, "🙂" * 50, " " * 100, "\n" * 50, "\t" * 30, "x " * 200,
        "0" * 100, "Supercalifragilisticexpialidocious" * 5,
        "def foo():\n    pass\n\n\n", "    indented", "\t\tindented with tabs",
        "trailing spaces on line   \nnext line", "a \n b", "a\u00a0b", "a\u3000b", "a\u2009b",
        "\u00a0\u00a0", "\r\n\r\n", "\r", "\x0b\x0c", "\x00", "nul\x00byte", "\x7f", "\x1b[31mred",
        "控制字符\x01\x02", "\ufeffBOM", "\ufffd", "replacement \ufffd char", "\U0010ffff",
        "\ue000private", "\U0001d400", "A\u030a", "\u1100\u1161\u11a8", "ﬁﬂ ligatures",
        "Ⅻ ½ ① ⁂", "Hello, World! How are you? I'm fine... Thanks!!!",
        "«Bonjour», dit-il — “quoted” ‘single’", "The year 1999 and 2000s; 3rd, 21st",
        "$100.00 €50 £30 ¥1000 ₹200", "100% 50° 3μm 5Ω", "i.e. e.g. etc. vs. Mr. Dr.",
        "ALL CAPS SENTENCE", "mIxEd CaSe", "under_score and-dash and.dot",
        "emoji😀inside😀words", "日本語English混合Text", "Ελληνικά and English",
        "עברית עם English", "العربية 123 English", "हिन्दी में 42", "ไทยภาษา", "한국어English",
    ]
    return base


def main():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.jsonl")
    check = len(sys.argv) > 1 and sys.argv[1] == "--check"
    out = sys.argv[1] if len(sys.argv) > 1 and not check else default
    rng = random.Random(20261126)
    strings = handwritten()
    for pool in (WORDS, SCRIPTS, EMOJI, CODE, PUNCT, SPECIALS, WHITESPACE):
        strings.extend(pool)
    strings.extend(unicodedata.normalize("NFD", s) for s in WORDS + SCRIPTS)
    strings.extend(numbers(rng) for _ in range(150))
    strings.extend(random_unicode(rng) for _ in range(250))
    while len(strings) < 2400:
        strings.append(random_string(rng))
    text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in strings)
    if check:
        with open(out, encoding="utf-8") as f:
            same = f.read() == text
        print(f"{out}: {'up to date' if same else 'DIFFERS from make_corpus.py output'} "
              f"({len(strings)} strings)")
        return 0 if same else 1
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(strings)} strings to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
