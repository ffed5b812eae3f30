// Writes a small TensorBoard log with qlora's EventWriter for tests/compat/tensorboard_read.py to read back: a run
// stopped after step 3 and resumed from its step-2 checkpoint, so the reader must see each step once.
#include <cstdio>

#include <qlora/io/tensorboard.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_events <log_dir>\n");
    return 2;
  }
  std::filesystem::remove_all(argv[1]);
  {  // a run that logged steps 1-3 and was stopped after its checkpoint at step 2
    qlora::tensorboard::EventWriter w(argv[1]);
    const float losses[] = {2.5f, 2.25f, 9.0f};
    for (int step = 1; step <= 3; ++step) w.add_scalar("train/loss", losses[step - 1], step);
  }
  // resumed from checkpoint-2: its step 3 replaces the stopped run's (TensorBoard must show 2.5, 2.25, 1.875)
  qlora::tensorboard::EventWriter w(argv[1]);
  w.resume_after(2);
  w.add_scalar("train/loss", 1.875f, 3);
  return 0;
}
