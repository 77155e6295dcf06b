// Dropout keep bits on the device: the definition of src/models/transformer/mask_bits.rs
// (Philox4x32-10 of src/rng/philox.rs and the counter layout), so a kernel draws the bit of the
// unit it applies the mask to and agrees with the CPU pass bit for bit.
// tests/dropout_masks.rs compiles this file as C++ on the host and checks it against the Rust.
//
// Built-in types only (no <stdint.h>), so that nvcc, NVRTC and a host C++ compiler all take it.
#pragma once

#ifdef __CUDACC__
#define GROKSTACK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GROKSTACK_HOST_DEVICE inline
#endif

// The four 32-bit words of one Philox4x32-10 draw.
struct grokstack_philox_words {
    unsigned int w[4];
};

// Philox4x32-10 (Salmon et al. 2011) at counter c under key k: ten rounds of two 32x32 -> 64-bit
// products, the key bumped by the Weyl constants before every round but the first.
GROKSTACK_HOST_DEVICE grokstack_philox_words grokstack_philox4x32_10(
    unsigned int c0, unsigned int c1, unsigned int c2, unsigned int c3, unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        unsigned long long p0 = 0xD2511F53ull * c0;
        unsigned long long p1 = 0xCD9E8D57ull * c2;
        unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    grokstack_philox_words out = {{c0, c1, c2, c3}};
    return out;
}

// Whether unit `element` of a dropout site is kept. key0, key1: the run's key (the host's
// philox::key(seed, Stream::Dropout)); site: 4 * layer + place (0 attention weights, 1 attention
// output, 2 FFN hidden, 3 FFN output); step: optimizer steps taken; element: the unit's row-major
// index in the run's mask of that site ([N, H, T, T] or [N, T, width]); threshold: ceil(p * 2^32),
// computed on the host.
GROKSTACK_HOST_DEVICE bool grokstack_dropout_keeps(
    unsigned int key0, unsigned int key1, unsigned int site, unsigned int step, unsigned long long element,
    unsigned long long threshold) {
    unsigned long long group = element / 4;
    grokstack_philox_words words =
        grokstack_philox4x32_10((unsigned int)group, (unsigned int)(group >> 32), site, step, key0, key1);
    return words.w[element % 4] >= threshold;
}
