/* unicode_tables.h — declarations of the generated Unicode tables
 * (src/unicode_tables.c, made by tools/gen_unicode.py). Only src/unicode.c
 * reads them; everyone else uses src/unicode.h. */
#ifndef GLM_UNICODE_TABLES_H
#define GLM_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

/* Property bits stored in the low byte of uc_class_starts entries. */
#define UC_L    1u   /* General_Category L* */
#define UC_N    2u   /* General_Category N* */
#define UC_WS   4u   /* White_Space (Rust regex / Oniguruma \s) */
#define UC_WORD 8u   /* Rust regex \w: Alphabetic, M, Nd, Pc, Join_Control */

extern const uint32_t uc_class_starts[];  extern const size_t uc_class_starts_len;  /* (start<<8)|bits */
extern const int32_t  uc_fold_runs[];     extern const size_t uc_fold_runs_len;     /* {start,count,stride,delta} */
extern const uint32_t uc_ccc_runs[];      extern const size_t uc_ccc_runs_len;      /* {start,end,ccc} */
extern const uint32_t uc_decomp[];        extern const size_t uc_decomp_len;        /* {cp,first,second|0} */
extern const uint32_t uc_comp[];          extern const size_t uc_comp_len;          /* {first,second,composite} */
extern const uint32_t uc_nfc_qc_runs[];   extern const size_t uc_nfc_qc_runs_len;   /* {start,end,1=No|2=Maybe} */

#endif
