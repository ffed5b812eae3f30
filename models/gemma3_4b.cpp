// open_causal_lm's Gemma3_4B: the NF4 training model and the dequantized generation model, compiled here once.
#include <qlora/nn/gemma3_causal_lm.hpp>

QLORA_INSTANTIATE_GEMMA3(qlora::Gemma3_4B);
