/**
 * V8 flags every checkout node starts with: `npm start`, the image's CMD and the scripts that spawn
 * nodes (the local cluster, the benchmark, the chaos run) pass them, and a unit test checks that
 * each launcher does.
 *
 * A young generation of 32 MB per semi-space instead of V8's default (16 MB on 64-bit): a checkout
 * allocates envelopes, statements and rows that die within milliseconds, and a larger nursery
 * collects them less often and promotes fewer to the old generation. Embedded closed loop,
 * alternated, five pairs: 222.6 → 237.4 checkouts/s (medians, ahead in 5 of 5), the node's RSS
 * 25–100 MB higher (bench/ANALYSIS.md).
 */
export const NODE_FLAGS = ["--max-semi-space-size=32"];
