/* tile_config.h — loading an Intel AMX tile configuration (palette 1, the
 * 8 tiles' widths and heights), shared by kernels_amx.c and quant_amx.c.
 * Only to be called where the CPU has AMX and Linux granted the tiles. */
#ifndef GLM_TILE_CONFIG_H
#define GLM_TILE_CONFIG_H

#include <stdint.h>
#include <string.h>

/* Tile t gets rows[t] rows of colsb[t] bytes. */
static inline void tile_config_load(const uint16_t colsb[8], const uint8_t rows[8]) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = colsb[t];
        c.rows[t] = rows[t];
    }
    /* ldtilecfg in assembly: GCC 12's _tile_loadconfig tells the compiler it
       reads 8 bytes, which let it drop the stores above; this operand is the
       whole struct */
    __asm__ volatile("ldtilecfg %0" : : "m"(c));
}

#endif
