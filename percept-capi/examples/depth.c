/*
 * percept from C: load a model, predict depth for an image, check it against the CLI's
 * output, show how errors and cancellation look. CI builds it with AddressSanitizer and leak
 * detection (percept-capi/test.sh):
 *
 *   depth MODEL IMAGE.ppm REFERENCE.npy STEPS SEED
 *
 * MODEL: a .safetensors file; IMAGE.ppm: a binary (P6) PPM; REFERENCE.npy: what
 * `percept depth IMAGE.ppm --steps STEPS --seed SEED --backend cpu` wrote for it. Exits 0
 * when every check passes, 1 (saying which failed) otherwise.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "percept.h"

static int failures = 0;

/* Report a failed check and carry on, so that one run shows every failure. */
#define EXPECT(cond, ...)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* A call that must succeed; on failure print percept's message and stop. */
#define CHECK(call)                                                                        \
    do {                                                                                   \
        percept_status status_ = (call);                                                   \
        if (status_ != PERCEPT_OK) {                                                       \
            fprintf(stderr, "FAIL %s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call, \
                    percept_status_name(status_), percept_last_error());                   \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* ---- input files: a binary PPM and a float32 .npy, just enough of each ---------------- */

static int skip_space_and_comments(FILE *f) {
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#') {
            while ((c = fgetc(f)) != EOF && c != '\n') {
            }
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            ungetc(c, f);
            return 0;
        }
    }
    return -1;
}

/* Read a P6 PPM into rows `stride` bytes apart (stride >= width * 3: padding is allowed). */
static uint8_t *read_ppm(const char *path, uint32_t *width, uint32_t *height, size_t extra_stride,
                         size_t *stride) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    unsigned w = 0, h = 0, maxval = 0;
    char magic[3] = {0};
    uint8_t *pixels = NULL;
    if (fread(magic, 1, 2, f) != 2 || strcmp(magic, "P6") != 0 || skip_space_and_comments(f) ||
        fscanf(f, "%u", &w) != 1 || skip_space_and_comments(f) || fscanf(f, "%u", &h) != 1 ||
        skip_space_and_comments(f) || fscanf(f, "%u", &maxval) != 1 || fgetc(f) == EOF ||
        maxval != 255 || w == 0 || h == 0) {
        fprintf(stderr, "%s: not an 8-bit binary PPM (P6)\n", path);
        goto done;
    }
    *stride = (size_t)w * 3 + extra_stride;
    pixels = calloc((size_t)h, *stride);
    for (unsigned y = 0; pixels && y < h; y++) {
        if (fread(pixels + y * *stride, 3, w, f) != w) {
            fprintf(stderr, "%s: truncated at row %u\n", path, y);
            free(pixels);
            pixels = NULL;
        }
    }
    *width = w;
    *height = h;
done:
    fclose(f);
    return pixels;
}

/* Read a little-endian float32, C-order, 2-D .npy (as `percept depth` writes depth). */
static float *read_npy_2d(const char *path, size_t *rows, size_t *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    float *data = NULL;
    char *header = NULL;
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
        fprintf(stderr, "%s: not a version 1.0 .npy file\n", path);
        goto done;
    }
    size_t header_len = (size_t)pre[8] | (size_t)pre[9] << 8;
    header = calloc(header_len + 1, 1);
    if (!header || fread(header, 1, header_len, f) != header_len) {
        fprintf(stderr, "%s: truncated header\n", path);
        goto done;
    }
    const char *shape = strstr(header, "'shape': (");
    if (!strstr(header, "'descr': '<f4'") || !strstr(header, "'fortran_order': False") || !shape ||
        sscanf(shape, "'shape': (%zu, %zu)", rows, cols) != 2) {
        fprintf(stderr, "%s: expected a 2-D little-endian float32 array in C order: %s\n", path,
                header);
        goto done;
    }
    size_t n = *rows * *cols;
    data = malloc(n * sizeof(float));
    if (data && fread(data, sizeof(float), n, f) != n) {
        fprintf(stderr, "%s: truncated data\n", path);
        free(data);
        data = NULL;
    }
done:
    free(header);
    fclose(f);
    return data;
}

/* ---- progress and cancellation ---------------------------------------------------------- */

/* What the progress callback sees; shared with the thread that cancels. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t stepped;
    uint32_t steps_done;
    uint32_t stop_after; /* the callback returns false after this step (0: never) */
    bool call_returned;  /* set by the caller, so that the canceller never waits forever */
    percept_session *session;
} progress_state;

static bool on_progress(uint32_t step, uint32_t steps, void *user_data) {
    progress_state *p = user_data;
    (void)steps;
    pthread_mutex_lock(&p->lock);
    p->steps_done = step;
    pthread_cond_broadcast(&p->stepped);
    pthread_mutex_unlock(&p->lock);
    return p->stop_after == 0 || step < p->stop_after;
}

/* Another thread: wait until the first step is done, then cancel the running call. */
static void *cancel_after_first_step(void *arg) {
    progress_state *p = arg;
    pthread_mutex_lock(&p->lock);
    while (p->steps_done < 1 && !p->call_returned) {
        pthread_cond_wait(&p->stepped, &p->lock);
    }
    bool cancel = !p->call_returned;
    pthread_mutex_unlock(&p->lock);
    if (!cancel) {
        return NULL; /* the call failed before its first step; main reports it */
    }
    percept_status status = percept_session_cancel(p->session);
    EXPECT(status == PERCEPT_OK, "percept_session_cancel returned %s", percept_status_name(status));
    return NULL;
}

/* ---- the checks ------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL IMAGE.ppm REFERENCE.npy STEPS SEED\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *image_path = argv[2], *reference_path = argv[3];
    uint32_t steps = (uint32_t)strtoul(argv[4], NULL, 10);
    uint64_t seed = strtoull(argv[5], NULL, 10);
    setvbuf(stdout, NULL, _IONBF, 0); /* keep stdout and stderr in order */

    /* The library must be the one the header describes. */
    EXPECT(percept_abi_version() == PERCEPT_ABI_VERSION, "library ABI %u, header ABI %u",
           percept_abi_version(), PERCEPT_ABI_VERSION);
    printf("percept %s, ABI %u\n", percept_version(), percept_abi_version());

    /* A model file that does not exist: an I/O failure whose message names it, and no handle. */
    percept_model *missing = (percept_model *)1;
    percept_status status = percept_model_load("no/such/model.safetensors", NULL, &missing);
    EXPECT(status == PERCEPT_ERR_IO, "loading a missing file returned %s", percept_status_name(status));
    EXPECT(strstr(percept_last_error(), "no/such/model.safetensors") != NULL,
           "message does not name the file: %s", percept_last_error());
    EXPECT(missing == NULL, "failed load left a handle");

    /* The model, once; a session on the CPU (the CLI's reference ran with --backend cpu). */
    percept_model *model = NULL;
    CHECK(percept_model_load(model_path, NULL, &model));
    percept_session_params session_params = percept_session_default_params();
    session_params.device = PERCEPT_DEVICE_CPU;
    percept_session *session = NULL;
    CHECK(percept_session_new(model, &session_params, &session));
    printf("model: %s\nsession: %s\n", percept_model_description(model),
           percept_session_device_name(session));

    /* The image, in rows padded by 5 bytes to show that the stride is honoured. */
    uint32_t width, height;
    size_t stride;
    uint8_t *pixels = read_ppm(image_path, &width, &height, 5, &stride);
    if (!pixels) {
        return 1;
    }
    percept_image image = {pixels, width, height, stride, PERCEPT_PIXEL_RGB8};

    /* Depth at the input's size, with a progress callback. */
    size_t n = (size_t)width * height;
    float *depth = malloc(n * sizeof(float));
    progress_state progress = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false, session};
    percept_predict_params params = percept_predict_default_params();
    params.num_inference_steps = steps;
    params.seed = seed;
    params.progress = on_progress;
    params.progress_user_data = &progress;
    CHECK(percept_depth(session, &image, &params, depth, n, NULL, 0));
    EXPECT(progress.steps_done == steps, "progress reported %u of %u steps", progress.steps_done, steps);

    /* The same input and seed through the CLI: equal within float rounding. */
    size_t rows = 0, cols = 0;
    float *reference = read_npy_2d(reference_path, &rows, &cols);
    EXPECT(reference && rows == height && cols == width, "reference is %zu x %zu, image %u x %u",
           cols, rows, width, height);
    if (reference && rows == height && cols == width) {
        double max_diff = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)depth[i] - reference[i]);
            max_diff = d > max_diff || isnan(d) ? d : max_diff;
        }
        printf("depth %ux%u: max |C API - CLI| = %.3g\n", width, height, max_diff);
        EXPECT(max_diff <= 1e-5, "depth differs from the CLI's by %g", max_diff);
    }

    /* A batch of the image twice: two depth maps in a row, each the single call's. */
    percept_image pair[2] = {image, image};
    float *batch = malloc(2 * n * sizeof(float));
    EXPECT(batch != NULL, "out of memory");
    CHECK(percept_depth_batch(session, pair, 2, &params, batch, 2 * n, NULL, 0));
    double batch_diff = 0;
    for (size_t i = 0; i < 2 * n; i++) {
        double d = fabs((double)batch[i] - depth[i % n]);
        batch_diff = d > batch_diff || isnan(d) ? d : batch_diff;
    }
    printf("depth batch of 2: max |batch - single| = %.3g\n", batch_diff);
    EXPECT(batch_diff <= 1e-5, "a batch's depth differs from the single call's by %g", batch_diff);
    free(batch);

    /* Bad arguments: the right status, a message naming the argument, no output written. */
    float sentinel = -7.0f;
    status = percept_depth(session, &image, &params, &sentinel, 1, NULL, 0);
    EXPECT(status == PERCEPT_ERR_INVALID_ARGUMENT, "small output returned %s", percept_status_name(status));
    EXPECT(strstr(percept_last_error(), "depth_out") != NULL, "message: %s", percept_last_error());
    EXPECT(sentinel == -7.0f, "output written on failure");
    printf("too small an output: %s: %s\n", percept_status_name(status), percept_last_error());

    percept_image bad_format = image;
    bad_format.format = 42;
    status = percept_depth(session, &bad_format, &params, depth, n, NULL, 0);
    EXPECT(status == PERCEPT_ERR_INVALID_ARGUMENT, "format 42 returned %s", percept_status_name(status));
    EXPECT(strstr(percept_last_error(), "format") != NULL, "message: %s", percept_last_error());

    percept_image bad_stride = image;
    bad_stride.stride = width; /* less than a row of RGB */
    status = percept_depth(session, &bad_stride, &params, depth, n, NULL, 0);
    EXPECT(status == PERCEPT_ERR_INVALID_ARGUMENT, "short stride returned %s", percept_status_name(status));
    EXPECT(strstr(percept_last_error(), "stride") != NULL, "message: %s", percept_last_error());

    percept_predict_params uninitialised = params;
    uninitialised.struct_size = 0;
    status = percept_depth(session, &image, &uninitialised, depth, n, NULL, 0);
    EXPECT(status == PERCEPT_ERR_INVALID_ARGUMENT, "struct_size 0 returned %s", percept_status_name(status));
    EXPECT(strstr(percept_last_error(), "percept_predict_default_params") != NULL, "message: %s",
           percept_last_error());

    status = percept_depth(NULL, &image, &params, depth, n, NULL, 0);
    EXPECT(status == PERCEPT_ERR_INVALID_ARGUMENT, "NULL session returned %s", percept_status_name(status));

    /* Cancel from another thread: a long call stops at a step boundary... */
    float *cancelled_depth = malloc(n * sizeof(float));
    percept_predict_params long_params = params;
    long_params.num_inference_steps = 500;
    progress.steps_done = 0; /* before the canceller starts waiting for the first step */
    pthread_t canceller;
    pthread_create(&canceller, NULL, cancel_after_first_step, &progress);
    status = percept_depth(session, &image, &long_params, cancelled_depth, n, NULL, 0);
    pthread_mutex_lock(&progress.lock);
    progress.call_returned = true;
    pthread_cond_broadcast(&progress.stepped);
    pthread_mutex_unlock(&progress.lock);
    pthread_join(canceller, NULL);
    EXPECT(status == PERCEPT_ERR_CANCELLED, "cancelled call returned %s: %s", percept_status_name(status),
           percept_last_error());
    EXPECT(progress.steps_done < 500, "the call ran all %u steps", progress.steps_done);
    printf("cancelled from another thread after %u of 500 steps: %s\n", progress.steps_done,
           percept_last_error());

    /* ...or when its progress callback returns false... */
    progress.steps_done = 0;
    progress.stop_after = 2;
    status = percept_depth(session, &image, &long_params, cancelled_depth, n, NULL, 0);
    EXPECT(status == PERCEPT_ERR_CANCELLED, "callback stop returned %s", percept_status_name(status));
    EXPECT(progress.steps_done == 2, "callback stop after %u steps", progress.steps_done);
    progress.stop_after = 0;

    /* ...and the session runs the next call as before. */
    CHECK(percept_depth(session, &image, &params, cancelled_depth, n, NULL, 0));
    EXPECT(memcmp(depth, cancelled_depth, n * sizeof(float)) == 0,
           "the call after a cancel differs from the first");

    free(cancelled_depth);
    free(reference);
    free(depth);
    free(pixels);
    percept_session_free(session);
    percept_model_free(model);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all C API checks passed\n");
    return 0;
}
