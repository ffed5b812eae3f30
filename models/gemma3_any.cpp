// open_causal_lm's Gemma3AnySize: every extent read from the file at run time, for the configurations the published
// sizes do not cover (tiny test checkpoints, community variants).
#include <qlora/nn/gemma3_causal_lm.hpp>

QLORA_INSTANTIATE_GEMMA3(qlora::Gemma3AnySize);
