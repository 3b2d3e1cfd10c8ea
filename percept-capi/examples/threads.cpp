// percept from C++: the header's threading rules in practice. One model shared by sessions on
// several threads (run in parallel, same results), a session refused to a second thread while
// it runs, errors turned into exceptions, handles owned by std::unique_ptr. CI builds it with
// AddressSanitizer and leak detection (percept-capi/test.sh):
//
//   threads MODEL STEPS
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "percept.h"

namespace {

// A failed call as an exception carrying percept's status and message.
struct percept_error : std::runtime_error {
    percept_status status;
    percept_error(percept_status s, const std::string& what)
        : std::runtime_error(std::string(percept_status_name(s)) + ": " + what), status(s) {}
};

void check(percept_status s) {
    if (s != PERCEPT_OK) throw percept_error(s, percept_last_error());
}

struct model_deleter {
    void operator()(percept_model* m) const { percept_model_free(m); }
};
struct session_deleter {
    void operator()(percept_session* s) const { percept_session_free(s); }
};
using model_ptr = std::unique_ptr<percept_model, model_deleter>;
using session_ptr = std::unique_ptr<percept_session, session_deleter>;

model_ptr load_model(const char* path) {
    percept_model* m = nullptr;
    check(percept_model_load(path, nullptr, &m));
    return model_ptr(m);
}

session_ptr cpu_session(const percept_model* model, int threads) {
    percept_session_params params = percept_session_default_params();
    params.device = PERCEPT_DEVICE_CPU;
    params.cpu_threads = threads;
    percept_session* s = nullptr;
    check(percept_session_new(model, &params, &s));
    return session_ptr(s);
}

// A synthetic 96 x 64 float RGB image: a horizontal ramp with a bright square.
struct float_image {
    uint32_t width = 96, height = 64;
    std::vector<float> rgb = std::vector<float>(size_t(width) * height * 3);
    float_image() {
        for (uint32_t y = 0; y < height; y++)
            for (uint32_t x = 0; x < width; x++) {
                bool square = x > 30 && x < 60 && y > 20 && y < 44;
                for (int c = 0; c < 3; c++)
                    rgb[(size_t(y) * width + x) * 3 + c] = square ? 0.9f : float(x) / width * (0.3f + 0.2f * c);
            }
    }
    percept_image view() const { return {rgb.data(), width, height, 0, PERCEPT_PIXEL_RGB_F32}; }
};

std::vector<float> depth(percept_session* s, const float_image& img, uint32_t steps, uint64_t seed) {
    percept_predict_params params = percept_predict_default_params();
    params.num_inference_steps = steps;
    params.seed = seed;
    std::vector<float> out(size_t(img.width) * img.height);
    percept_image view = img.view();
    check(percept_depth(s, &view, &params, out.data(), out.size(), nullptr, 0));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL STEPS\n", argv[0]);
        return 2;
    }
    const uint32_t steps = uint32_t(std::strtoul(argv[2], nullptr, 10));
    int failures = 0;
    auto expect = [&](bool ok, const std::string& what) {
        if (!ok) {
            std::fprintf(stderr, "FAIL: %s\n", what.c_str());
            failures++;
        }
    };
    try {
        const model_ptr model = load_model(argv[1]);
        const float_image image;

        // Two threads, one session each, one shared model: the same seed gives the same depth
        // on both (and on the main thread, computed after them).
        std::vector<std::vector<float>> results(2);
        std::vector<std::thread> workers;
        std::vector<std::string> errors(2);
        for (size_t t = 0; t < results.size(); t++)
            workers.emplace_back([&, t] {
                try {
                    session_ptr session = cpu_session(model.get(), 1);
                    results[t] = depth(session.get(), image, steps, 3);
                } catch (const std::exception& e) {
                    errors[t] = e.what();
                }
            });
        for (auto& w : workers) w.join();
        for (const auto& e : errors) expect(e.empty(), "worker: " + e);
        session_ptr main_session = cpu_session(model.get(), 0);
        const std::vector<float> expected = depth(main_session.get(), image, steps, 3);
        for (const auto& r : results) expect(r == expected, "a worker's depth differs from the main thread's");
        std::printf("2 threads x 1 session on a shared model: depth identical to a third session's\n");

        // A session runs one call at a time: a second thread is refused while the first runs;
        // then that thread cancels the running call.
        std::atomic<bool> started{false};
        percept_predict_params params = percept_predict_default_params();
        params.num_inference_steps = 500;
        params.progress = [](uint32_t, uint32_t, void* flag) {
            static_cast<std::atomic<bool>*>(flag)->store(true);
            return true;
        };
        params.progress_user_data = &started;
        percept_status busy = PERCEPT_OK, cancel = PERCEPT_ERR_INTERNAL;
        std::string busy_message;
        std::thread intruder([&] {
            while (!started.load()) std::this_thread::yield();
            std::vector<float> out(size_t(image.width) * image.height);
            percept_image view = image.view();
            busy = percept_depth(main_session.get(), &view, nullptr, out.data(), out.size(), nullptr, 0);
            busy_message = percept_last_error();
            cancel = percept_session_cancel(main_session.get());
        });
        std::vector<float> out(size_t(image.width) * image.height);
        percept_image view = image.view();
        const percept_status long_call = percept_depth(main_session.get(), &view, &params, out.data(), out.size(), nullptr, 0);
        intruder.join();
        expect(busy == PERCEPT_ERR_INVALID_ARGUMENT, std::string("second thread got ") + percept_status_name(busy));
        expect(busy_message.find("busy") != std::string::npos, "message: " + busy_message);
        expect(cancel == PERCEPT_OK, "cancel failed");
        expect(long_call == PERCEPT_ERR_CANCELLED, std::string("long call returned ") + percept_status_name(long_call));
        std::printf("second thread on a running session: %s: %s\n", percept_status_name(busy), busy_message.c_str());

        // Errors as exceptions: a GPU index that cannot exist.
        percept_session_params gpu = percept_session_default_params();
        gpu.device = PERCEPT_DEVICE_CUDA;
        gpu.cuda_ordinal = -1;
        percept_session* none = nullptr;
        try {
            check(percept_session_new(model.get(), &gpu, &none));
            expect(false, "cuda_ordinal -1 accepted");
        } catch (const percept_error& e) {
            expect(e.status == PERCEPT_ERR_INVALID_ARGUMENT && none == nullptr, e.what());
            std::printf("exception: %s\n", e.what());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "FAIL: %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all C++ checks passed\n");
    return 0;
}
