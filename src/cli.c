/* cli.c — main(): the glmlite subcommands. */
#include <stdio.h>
int main(void) { puts("glmlite: under construction"); return 0; }
