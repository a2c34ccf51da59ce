/* A strict little JSON reader for the host tests of the @hvstat lines
 * (mm/stats_json.c): validates one object (RFC 8259 syntax, no
 * extensions) and answers questions about its members. Test code only. */
#ifndef TESTS_HOST_JSON_CHECK_H
#define TESTS_HOST_JSON_CHECK_H
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *jc_value(const char *s);

static const char *jc_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    return s;
}

static const char *jc_string(const char *s)
{
    if (*s != '"')
        return NULL;
    for (s++; *s != '"'; s++) {
        if ((unsigned char)*s < 0x20)
            return NULL;
        if (*s == '\\') {
            s++;
            if (*s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
                        return NULL;
                s += 4;
            } else if (!*s || !strchr("\"\\/bfnrt", *s)) {
                return NULL;
            }
        }
    }
    return s + 1;
}

static const char *jc_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return NULL;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return NULL;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return NULL;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return s;
}

static const char *jc_container(const char *s, char close, bool object)
{
    s = jc_ws(s + 1);
    if (*s == close)
        return s + 1;
    for (;;) {
        if (object) {
            s = jc_string(s);
            if (!s)
                return NULL;
            s = jc_ws(s);
            if (*s++ != ':')
                return NULL;
        }
        s = jc_value(jc_ws(s));
        if (!s)
            return NULL;
        s = jc_ws(s);
        if (*s == close)
            return s + 1;
        if (*s++ != ',')
            return NULL;
        s = jc_ws(s);
    }
}

static const char *jc_value(const char *s)
{
    switch (*s) {
    case '{': return jc_container(s, '}', true);
    case '[': return jc_container(s, ']', false);
    case '"': return jc_string(s);
    case 't': return strncmp(s, "true", 4) ? NULL : s + 4;
    case 'f': return strncmp(s, "false", 5) ? NULL : s + 5;
    case 'n': return strncmp(s, "null", 4) ? NULL : s + 4;
    default: return jc_number(s);
    }
}

/* Is [s, end) exactly one JSON object? */
static bool jc_valid_object(const char *s, const char *end)
{
    if (*s != '{')
        return false;
    const char *e = jc_value(s);
    return e && jc_ws(e) == end;
}

/* The member keys of object s, comma-joined into out ("v,type,t,..."). */
static void jc_keys(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    s = jc_ws(s + 1);
    while (*s == '"') {
        const char *e = jc_string(s);
        size_t len = (size_t)(e - s - 2);
        if (n + len + 2 >= cap)
            return;
        if (n)
            out[n++] = ',';
        memcpy(out + n, s + 1, len);
        n += len;
        out[n] = 0;
        s = jc_ws(jc_value(jc_ws(jc_ws(e) + 1)));
        if (*s == ',')
            s = jc_ws(s + 1);
    }
}

/* The value of member key of object s (a pointer into s), or NULL. */
static const char *jc_get(const char *s, const char *key)
{
    s = jc_ws(s + 1);
    size_t kl = strlen(key);
    while (*s == '"') {
        const char *e = jc_string(s);
        const char *v = jc_ws(jc_ws(e) + 1);
        if ((size_t)(e - s - 2) == kl && !strncmp(s + 1, key, kl))
            return v;
        s = jc_ws(jc_value(v));
        if (*s == ',')
            s = jc_ws(s + 1);
    }
    return NULL;
}

/* A member path "a.b" as a number (fails the test when missing). */
static double jc_num(const char *obj, const char *path)
{
    char k[64];
    const char *v = obj;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(k, sizeof(k), "%.*s", (int)n, path);
        v = jc_get(v, k);
        path += n + (dot ? 1 : 0);
    }
    if (!v || !jc_number(v)) {
        fprintf(stderr, "json: no number at %s in %s\n", path, obj);
        abort();
    }
    return strtod(v, NULL);
}
#endif
