/* cli.h — what the subcommand files of the command-line front end share. */
#ifndef GLM_CLI_H
#define GLM_CLI_H

/* Each subcommand gets argv after the command name and returns the exit
 * status (0 ok, 1 failure, 2 usage error). */
int cmd_quantize(int argc, char **argv);      /* cli_quant.c */
int cmd_perplexity(int argc, char **argv);    /* cli_quant.c */
int cmd_serve(int argc, char **argv);         /* cli_serve.c */
int cmd_bench(int argc, char **argv);         /* cli_bench.c */

/* A whole decimal integer in [lo, hi] (v may be NULL): 0, or -1 if malformed or out of range. */
int cli_parse_int(const char *v, int lo, int hi, int *out);

/* --cache-type: "f32" (default, exact) or "bf16" (half the KV memory); 0 ok, -1 unknown. */
int cli_parse_cache_type(const char *v, int *kv_bf16);

/* The model directory used when -m is not given: models/demo beside the binary. */
const char *cli_default_model_dir(void);

#endif
