/* The bounded label sets of the core's counters: see stats.h. */
#include "stats.h"

static const char *const known_tokens[] = {"websocket", "h2c", "tls"};
#define NKNOWN (sizeof known_tokens / sizeof known_tokens[0])

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}

sy_stats_token *sy_stats_token_of(sy_stats *s, const char *name, size_t n)
{
    if (s->ntokens == 0) {
        for (size_t i = 0; i < NKNOWN; i++)
            memcpy(s->tokens[i].name, known_tokens[i], strlen(known_tokens[i]) + 1);
        memcpy(s->tokens[SY_STATS_TOKENS - 1].name, "other", 6);
        s->ntokens = (int)NKNOWN;
    }
    /* The protocol name without its version: "TLS/1.2" counts as "tls". */
    size_t len = 0;
    while (len < n && name[len] != '/')
        len++;
    char key[SY_STATS_TOKEN_MAX + 1];
    if (len > SY_STATS_TOKEN_MAX)
        len = SY_STATS_TOKEN_MAX;
    for (size_t i = 0; i < len; i++)
        key[i] = lower(name[i]);
    key[len] = 0;
    for (int i = 0; i < s->ntokens; i++)
        if (strcmp(s->tokens[i].name, key) == 0)
            return &s->tokens[i];
    if (len == 0 || s->ntokens >= SY_STATS_TOKENS - 1)
        return &s->tokens[SY_STATS_TOKENS - 1];
    sy_stats_token *t = &s->tokens[s->ntokens++];
    memcpy(t->name, key, len + 1);
    return t;
}

void sy_stats_close_code(sy_stats *s, int code, int sent)
{
    if (code == 0)
        code = 1005;
    sy_stats_code *e = NULL;
    for (int i = 0; i < s->ncodes && !e; i++)
        if (s->codes[i].code == code)
            e = &s->codes[i];
    if (!e) {
        /* The registered codes always get an entry; others while room is left. */
        int known = code >= 1000 && code <= 1015;
        int seen = 0;
        for (int i = 0; i < s->ncodes; i++)
            if (!(s->codes[i].code >= 1000 && s->codes[i].code <= 1015))
                seen++;
        if (s->ncodes < SY_STATS_CODES - 1 && (known || seen < SY_STATS_SEEN)) {
            e = &s->codes[s->ncodes++];
            e->code = code;
        } else {
            e = &s->codes[SY_STATS_CODES - 1];
            e->code = -1;
        }
    }
    if (sent)
        e->sent++;
    else
        e->received++;
}
