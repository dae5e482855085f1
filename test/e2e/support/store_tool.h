/*
 * store_tool.h - what the C helpers of the end-to-end tests share (store-check, imap-store-check,
 * store-put; test/e2e/support/store_tool.c is linked into each): the store of a configuration
 * file, a check named on the command line run from a table, and the macros the checks fail with.
 */
#ifndef CASSMAIL_E2E_STORE_TOOL_H
#define CASSMAIL_E2E_STORE_TOOL_H

#include <stdio.h>

#include "store/store.h"
#include "util/config.h"

/* In a check (a function returning int): CHECK(cond, format, ...) fails with the message;
 * OK(call) fails with the GError the call set through E. */
#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } } while (0)
#define OK(call) do { GError *e_ = NULL; if (!(call)) { fprintf(stderr, "FAIL %s:%d: %s: %s\n", \
    __FILE__, __LINE__, #call, e_ ? e_->message : "?"); return 1; } } while (0)
#define E (&e_)

/* One check a program offers: 0 when it passes. */
typedef struct {
    const char *name;
    int (*run)(void);
} StoreToolCheck;

/* store_tool_open - the configuration at PATH (into *CFG) and the store it names; NULL after
 * a message naming PROGRAM on stderr (config_free *CFG either way) */
Store *store_tool_open(const char *program, const char *path, CassmailConfig **cfg);

/* store_tool_run - the check called NAME among CHECKS (ended by a NULL name), "ok NAME" printed
 * when it passes: its exit status, 2 for a name not in the table */
int store_tool_run(const char *program, const StoreToolCheck *checks, const char *name);

#endif
