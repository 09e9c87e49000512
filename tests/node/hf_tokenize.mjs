// hf_tokenize.mjs — oracle: encode texts with @huggingface/tokenizers from a model directory.
// Usage: node tests/node/hf_tokenize.mjs MODEL_DIR < texts.json   (a JSON array of strings)
// Prints a JSON array of {ids, decoded} (one per text) on stdout; exits 1 if the files do not load.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: hf_tokenize.mjs MODEL_DIR < texts.json");
  process.exit(2);
}
const tokJson = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
let tokCfg = {};
try {
  tokCfg = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
} catch {
  // tokenizer_config.json is optional in a model directory
}
const tok = new Tokenizer(tokJson, tokCfg);
const texts = JSON.parse(readFileSync(0, "utf8"));
const out = texts.map((t) => {
  const ids = tok.encode(t, { add_special_tokens: true }).ids;
  return { ids, decoded: ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "" };
});
process.stdout.write(JSON.stringify(out) + "\n");
