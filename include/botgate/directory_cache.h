/*
 * Which conversation-directory writes (relay_directory.h) can be skipped: the same
 * conversation, serviceUrl, channel and tenant written by this process a short while ago.
 *
 * The directory entry lives for relay.directory_ttl_s (90 days by default), so rewriting it
 * on every activity of a busy conversation only costs Redis an HSET and an EXPIRE per
 * request. botgate rewrites it once per refresh interval instead (an hour by default:
 * bg_directory_refresh_ms); an activity that changes any field is written at once.
 *
 * A direct-mapped table of fingerprints (64-bit FNV-1a over the four fields): a slot holds
 * the latest entry that hashed to it, so a busy table forgets, and a forgotten entry is
 * just written again. Two different entries with one fingerprint would skip a write: only
 * authenticated activities are noted, and the miss lasts one refresh interval. Pure: the
 * time is a parameter. One thread.
 */
#ifndef BOTGATE_DIRECTORY_CACHE_H
#define BOTGATE_DIRECTORY_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct bg_directory_cache bg_directory_cache;

/* slots is rounded up to a power of two; NULL when out of memory. */
bg_directory_cache *bg_directory_cache_new(size_t slots);
void bg_directory_cache_free(bg_directory_cache *c);

/* The refresh interval for a directory TTL: a 24th of it, at most an hour. */
int64_t bg_directory_refresh_ms(int ttl_s);

/* 1 when these fields were noted less than refresh_ms before now_ms. tenant NULL = "". */
int bg_directory_cache_fresh(const bg_directory_cache *c, const char *conversation_id,
                             const char *service_url, const char *channel_id, const char *tenant_id,
                             int64_t now_ms, int64_t refresh_ms);
/* Notes that these fields were written at now_ms. */
void bg_directory_cache_note(bg_directory_cache *c, const char *conversation_id,
                             const char *service_url, const char *channel_id, const char *tenant_id,
                             int64_t now_ms);

#endif
