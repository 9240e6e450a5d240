/*
 * An acquisition loop in C: streams synthetic frames to a poco-rt server at a fixed rate.
 *
 *     ./example_publisher tcp://127.0.0.1:8701 rig1 117 600 30    (endpoint, session, units, frames, Hz)
 *
 * Each frame is N float32 values, one per ROI: put your ROI extraction where `synthetic_frame` is.
 * Prints the frames sent and dropped at the end; exits 1 on a refused frame or a bad argument.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200112L /* nanosleep */
#endif

#include "poco_rt_publisher.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

/* A slow sine per unit, each unit at its own phase: something a forecaster can follow. */
static void synthetic_frame(float *values, uint32_t unit_count, uint64_t frame_index) {
    uint32_t unit;
    for (unit = 0; unit < unit_count; ++unit) {
        values[unit] = (float)sin(0.2 * (double)frame_index + 0.1 * (double)unit);
    }
}

/* Sleeps until `due_ns` on the wall clock: frame k is due at start + k / rate, so a late frame never
 * delays the ones after it. */
static void sleep_until(int64_t due_ns) {
    int64_t left_ns = due_ns - poco_rt_now_ns();
#ifdef _WIN32
    if (left_ns > 0) {
        Sleep((DWORD)(left_ns / 1000000));
    }
#else
    struct timespec pause;
    if (left_ns <= 0) {
        return;
    }
    pause.tv_sec = (time_t)(left_ns / 1000000000);
    pause.tv_nsec = (long)(left_ns % 1000000000);
    nanosleep(&pause, NULL);
#endif
}

int main(int argc, char **argv) {
    uint32_t unit_count;
    uint64_t frames;
    uint64_t frame_index;
    double rate_hz;
    int64_t start_ns;
    int32_t status;
    float *values;
    poco_rt_publisher *publisher;
    if (argc != 6) {
        fprintf(stderr, "usage: %s ENDPOINT SESSION UNITS FRAMES RATE_HZ\n", argv[0]);
        return 1;
    }
    unit_count = (uint32_t)strtoul(argv[3], NULL, 10);
    frames = strtoull(argv[4], NULL, 10);
    rate_hz = strtod(argv[5], NULL);
    if (unit_count == 0 || rate_hz <= 0) {
        fprintf(stderr, "UNITS and RATE_HZ must be positive\n");
        return 1;
    }
    values = (float *)malloc(unit_count * sizeof *values); /* one buffer, reused for every frame */
    if (values == NULL) {
        fprintf(stderr, "no memory for %lu units\n", (unsigned long)unit_count);
        return 1;
    }
    publisher = poco_rt_publisher_open(argv[1], argv[2], POCO_RT_DEFAULT_QUEUE_FRAMES, POCO_RT_DEFAULT_LINGER_MS,
                                       &status);
    if (publisher == NULL) {
        fprintf(stderr, "cannot publish: %s\n", poco_rt_status_message(status));
        free(values);
        return 1;
    }
    start_ns = poco_rt_now_ns();
    for (frame_index = 0; frame_index < frames; ++frame_index) {
        sleep_until(start_ns + (int64_t)((double)frame_index * 1e9 / rate_hz));
        synthetic_frame(values, unit_count, frame_index);
        status = poco_rt_publisher_send_f32(publisher, values, unit_count, frame_index, poco_rt_now_ns());
        if (status < 0) {
            fprintf(stderr, "frame %llu refused: %s\n", (unsigned long long)frame_index,
                    poco_rt_status_message(status));
            break;
        }
    }
    printf("sent %llu dropped %llu\n", (unsigned long long)poco_rt_publisher_sent(publisher),
           (unsigned long long)poco_rt_publisher_dropped(publisher));
    poco_rt_publisher_close(publisher); /* waits up to POCO_RT_DEFAULT_LINGER_MS for queued frames */
    free(values);
    return status < 0 ? 1 : 0;
}
