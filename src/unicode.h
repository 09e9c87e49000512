/* unicode.h — UTF-8 decoding and the few Unicode properties the tokenizer
 * needs: letter / number / White_Space / word classes, simple case folding
 * and NFC normalization. Tables are generated from the UCD (Unicode 15.0 in
 * Debian bookworm's unicode-data) by tools/gen_unicode.py.
 *
 * Invalid UTF-8: every decoder here replaces an ill-formed sequence with
 * U+FFFD using the "maximal subpart" rule of the Unicode standard (§3.9,
 * U+FFFD substitution of maximal subparts), which is what the WHATWG
 * TextDecoder, Python's bytes.decode(errors="replace") and Rust's
 * String::from_utf8_lossy all do. So tokenizing bytes here gives the ids HF
 * tokenizers give for the lossily decoded string. */
#ifndef GLM_UNICODE_H
#define GLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define UNICODE_REPLACEMENT 0xFFFDu

/* Decodes one code point from s[0..len) (len >= 1). Returns the number of
 * bytes consumed (>= 1); *cp is U+FFFD when the bytes are ill-formed (the
 * consumed length is then the maximal subpart, at least 1 byte). */
size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);
/* Encodes cp (must be <= 0x10FFFF) into out[4]; returns the byte count. */
size_t utf8_encode(uint32_t cp, char *out);
/* Length of a valid UTF-8 sequence starting with lead byte b, 0 if b cannot start one. */
size_t utf8_seq_len(unsigned char b);
/* 1 when s[0..len) is well-formed UTF-8. */
int utf8_valid(const char *s, size_t len);
/* Appends s with ill-formed sequences replaced by U+FFFD (maximal subparts). */
void utf8_append_lossy(buf *out, const char *s, size_t len);

int uc_is_letter(uint32_t cp);      /* \p{L} */
int uc_is_number(uint32_t cp);      /* \p{N} */
int uc_is_space(uint32_t cp);       /* \s = White_Space */
int uc_is_word(uint32_t cp);        /* Rust regex \w */
uint32_t uc_simple_fold(uint32_t cp);   /* CaseFolding.txt C + S */
int uc_ccc(uint32_t cp);            /* canonical combining class */

/* Appends the NFC form of the valid UTF-8 text s[0..len) to out (ill-formed
 * input is first replaced as above). Text that passes the NFC quick check is
 * copied unchanged. */
void uc_nfc_append(buf *out, const char *s, size_t len);

#endif
