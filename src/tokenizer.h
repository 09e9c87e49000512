/* tokenizer.h — byte-level BPE tokenizers loaded from a Hugging Face
 * tokenizer.json: GLM-4 / Llama-3 style (Split regex with \p{N}{1,3}),
 * Qwen-2 style (single digits, optional NFC normalizer) and plain GPT-2
 * ByteLevel. Anything else in the file (another model type, normalizer,
 * pre-tokenizer, regex or decoder) is a load error, never a guess.
 *
 * Behaviour follows HF `tokenizers` (Rust) and is checked against the npm
 * `@huggingface/tokenizers`:
 *   - added tokens are matched literally before anything else, leftmost
 *     longest; `normalized: false` ones on the raw text, the others on the
 *     normalized text; `lstrip`/`rstrip` swallow adjacent White_Space,
 *     `single_word` requires no \w character on either side;
 *   - then the normalizer (NFC), the pre-tokenizer regex, byte-level mapping
 *     and BPE merges (lowest rank first, leftmost on ties), with
 *     `ignore_merges` (a pre-token that is itself in the vocab is one token);
 *   - no BOS/EOS or other post-processor tokens are added.
 *
 * Input text is bytes: ill-formed UTF-8 is replaced by U+FFFD first (maximal
 * subparts, as TextDecoder / from_utf8_lossy do), so the ids equal HF's for
 * the lossily decoded string. Decoding returns token bytes (byte-level
 * inverse); the streaming decoder only ever emits well-formed UTF-8 and
 * turns ill-formed sequences into U+FFFD, exactly as a lossy decode of the
 * whole byte stream would.
 *
 * Prompt injection: tokenizer_encode(match_special=1) turns every special
 * literal into its id, wherever it came from. For a rendered chat prompt use
 * tokenizer_encode_guarded() with the renderer's spans (chat.h): special
 * literals inside request text stay plain text, the template's markers become
 * special ids, and otherwise the ids equal match_special=1's.
 *
 * A loaded tokenizer is immutable: encode/decode may run from several
 * threads at once. */
#ifndef GLM_TOKENIZER_H
#define GLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

typedef struct tokenizer tokenizer;

/* Returns NULL and a message in err on failure. */
tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
tokenizer *tokenizer_load_mem(const char *json, size_t len, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);

/* match_special: 1 = literals of added tokens in text become their ids (HF
 * default); 0 = added tokens marked special are tokenized as plain text (for
 * untrusted content; non-special added tokens still match, as with HF's
 * encode_special_tokens). Returns 0 on success; *ids is malloc'd (caller
 * frees; may be NULL when *n_ids is 0). */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int match_special,
                     int32_t **ids, size_t *n_ids, char *err, size_t errlen);

/* Guarded encoding for prompts built from a template plus untrusted text
 * (SPEC §3 security note). spans: n_spans pairs (offset, length) of byte
 * ranges of text that came from the request (message contents, tool
 * results, ...; chat_render_spans() produces them). An added token marked
 * `special` becomes its id only where its literal lies entirely outside every
 * span; a literal that touches a span is tokenized as plain text, so a user
 * cannot inject "<|assistant|>" or "<think>" while the template's own markers
 * stay special. Non-special added tokens match as in tokenizer_encode.
 * Everything else is tokenizer_encode(match_special=1): the regex and BPE run
 * over the maximal text runs between matched added tokens, ignoring span
 * boundaries, so the ids are identical to tokenizer_encode(match_special=1)
 * whenever no span contains (or cuts through) a special literal.
 * Details: spans may overlap or come in any order; they are clipped to the
 * text. A special match straddling a span boundary is rejected and the
 * search resumes one byte later (a marker just after the span still
 * matches); one inside a span is skipped whole, as with match_special=0.
 * lstrip/rstrip of an accepted token may swallow whitespace inside a span,
 * exactly as tokenizer_encode does. Ill-formed UTF-8 is repaired first and
 * the spans are carried over to the repaired text (an edge inside a sequence
 * widens its span to the whole sequence). With an NFC normalizer, tokens with normalized=true are matched on
 * NFC text: each span is normalized piecewise and, if composition crosses a
 * span edge, that whole text run counts as guarded (GLM's tokenizer has no
 * normalizer and its special tokens are normalized=false, so this never
 * arises there). */
int tokenizer_encode_guarded(const tokenizer *t, const char *text, size_t len, const size_t *spans, size_t n_spans,
                             int32_t **ids, size_t *n_ids, char *err, size_t errlen);

/* The pieces encode would turn into ids, in order: each pre-token (after
 * normalization and the regex split, as bytes) with added_id -1, and each
 * matched added token with its id. For tests and debugging. */
typedef void (*tokenizer_piece_fn)(void *ctx, const char *piece, size_t len, int32_t added_id);
int tokenizer_pieces(const tokenizer *t, const char *text, size_t len, int match_special,
                     tokenizer_piece_fn fn, void *ctx, char *err, size_t errlen);

int tokenizer_token_id(const tokenizer *t, const char *token_text);       /* -1 if absent */
/* The raw vocab string (byte-level form, e.g. "Ġthe"), NULL for an unknown id. */
const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len);
/* Appends the bytes the token stands for; -1 (nothing appended) for an unknown id. */
int tokenizer_decode_token(const tokenizer *t, int32_t id, buf *out);
/* Appends the decoded bytes of ids, lossily made well-formed UTF-8. Unknown ids are skipped. */
void tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, buf *out);
int tokenizer_n_tokens(const tokenizer *t);          /* highest id + 1 */
int tokenizer_is_special(const tokenizer *t, int32_t id);   /* an added token with special=true */
int tokenizer_is_added(const tokenizer *t, int32_t id);     /* any added token */

/* Streaming decoder: feed ids one at a time; output only complete UTF-8. */
typedef struct {
    const tokenizer *t;
    unsigned char pend[8];   /* bytes of an incomplete UTF-8 sequence (at most 3 kept) */
    int npend;
} token_stream;
void token_stream_init(token_stream *s, const tokenizer *t);
void token_stream_push(token_stream *s, int32_t id, buf *out);   /* appends only complete UTF-8 */
void token_stream_push_bytes(token_stream *s, const char *b, size_t n, buf *out);
void token_stream_flush(token_stream *s, buf *out);               /* a held incomplete tail -> U+FFFD */

#endif
