// Writes a small TensorBoard log with qlora's EventWriter for tests/compat/tensorboard_read.py to read back.
#include <cstdio>

#include <qlora/io/tensorboard.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_events <log_dir>\n");
    return 2;
  }
  std::filesystem::remove_all(argv[1]);
  qlora::tensorboard::EventWriter w(argv[1]);
  const float losses[] = {2.5f, 2.25f, 1.875f};
  for (int step = 1; step <= 3; ++step) w.add_scalar("train/loss", losses[step - 1], step);
  return 0;
}
