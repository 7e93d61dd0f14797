/* Architecture specs (src/nn/spec.c): the "A-B-...-K" form, the compact
 * layer grammar, presets, @file.json, the kdcl.model JSON both ways, shape
 * inference, malformed text and JSON, and a seeded mutation loop. Needs no
 * OpenCL device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdcl/model.h"
#include "nn/spec_internal.h"
#include "testutil.h"

static kdcl_shape3 shp(size_t c, size_t h, size_t w) { return (kdcl_shape3){c, h, w, 0}; }

static kdcl_model_spec parse_ok(const char *text, size_t k)
{
    kdcl_model_spec s;
    kdcl_status st = kdcl_model_spec_parse(text, k, &s);
    ck_assert_msg(st == KDCL_OK, "'%s' refused: %s", text, kdcl_last_error());
    return s;
}

static void expect_bad(const char *text, size_t k, const char *want)
{
    kdcl_model_spec s;
    kdcl_status st = kdcl_model_spec_parse(text, k, &s);
    ck_assert_msg(st == KDCL_ERR_INVALID_ARG, "'%s': status %s (%s)", text, kdcl_status_name(st),
                  kdcl_last_error());
    ck_assert_msg(strstr(kdcl_last_error(), want), "'%s': message '%s' lacks '%s'", text, kdcl_last_error(),
                  want);
    ck_assert_ptr_null(s.layers);
    ck_assert_uint_eq(s.n, 0);
}

static int layers_equal(const kdcl_layer_spec *a, size_t na, const kdcl_layer_spec *b, size_t nb, char *why,
                        size_t wsize)
{
    if (na != nb) {
        snprintf(why, wsize, "%zu layers vs %zu", na, nb);
        return 0;
    }
    for (size_t i = 0; i < na; i++) {
        const kdcl_layer_spec *x = &a[i], *y = &b[i];
        int eq = x->kind == y->kind;
        if (eq) switch (x->kind) {
            case KDCL_LAYER_LINEAR: eq = x->out == y->out && x->bias == y->bias; break;
            case KDCL_LAYER_CONV2D:
                eq = x->out == y->out && x->kh == y->kh && x->kw == y->kw && x->sh == y->sh &&
                     x->sw == y->sw && x->ph == y->ph && x->pw == y->pw && x->bias == y->bias;
                break;
            case KDCL_LAYER_MAXPOOL2D:
            case KDCL_LAYER_AVGPOOL2D:
                eq = x->kh == y->kh && x->kw == y->kw && x->sh == y->sh && x->sw == y->sw &&
                     x->ph == y->ph && x->pw == y->pw;
                break;
            case KDCL_LAYER_DROPOUT: eq = x->p == y->p; break;
            case KDCL_LAYER_BATCHNORM: eq = x->eps == y->eps && x->momentum == y->momentum; break;
            case KDCL_LAYER_RESIDUAL:
                if (!layers_equal(x->body, x->n_body, y->body, y->n_body, why, wsize) ||
                    !layers_equal(x->shortcut, x->n_shortcut, y->shortcut, y->n_shortcut, why, wsize))
                    return 0;
                break;
            default: break;
            }
        if (!eq) {
            snprintf(why, wsize, "layer %zu differs (kind %d vs %d)", i + 1, (int)x->kind, (int)y->kind);
            return 0;
        }
    }
    return 1;
}

static void assert_spec_eq(const kdcl_model_spec *a, const kdcl_model_spec *b, const char *what)
{
    char why[128] = "";
    ck_assert_msg(layers_equal(a->layers, a->n, b->layers, b->n, why, sizeof why), "%s: %s", what, why);
    ck_assert_msg(a->in_features == b->in_features, "%s: in_features %zu vs %zu", what, a->in_features,
                  b->in_features);
}

/* Trainable parameters of a layer list with input `in` (weights, biases, BatchNorm affine). */
static size_t count_params(const kdcl_layer_spec *L, size_t n, kdcl_shape3 in)
{
    /* kdcl_spec_infer wants a flat end; nested lists may not end flat, so walk by hand */
    size_t total = 0;
    kdcl_shape3 x = in;
    for (size_t i = 0; i < n; i++) {
        const kdcl_layer_spec *l = &L[i];
        switch (l->kind) {
        case KDCL_LAYER_LINEAR: total += l->out * x.c + (l->bias ? l->out : 0); break;
        case KDCL_LAYER_CONV2D: total += l->out * x.c * l->kh * l->kw + (l->bias ? l->out : 0); break;
        case KDCL_LAYER_BATCHNORM: total += 2 * x.c; break;
        case KDCL_LAYER_RESIDUAL:
            total += count_params(l->body, l->n_body, x) + count_params(l->shortcut, l->n_shortcut, x);
            break;
        default: break;
        }
        /* the shape after layer i: infer the prefix 0..i with a flatten appended */
        kdcl_layer_spec *tmp = malloc((i + 2) * sizeof *tmp);
        ck_assert_ptr_nonnull(tmp);
        memcpy(tmp, L, (i + 1) * sizeof *tmp);
        tmp[i + 1] = kdcl_layer_spec_default(KDCL_LAYER_FLATTEN);
        kdcl_shape3 *oo = malloc((i + 2) * sizeof *oo);
        ck_assert_ptr_nonnull(oo);
        ck_assert_msg(kdcl_spec_infer(tmp, i + 2, in, oo) == KDCL_OK, "%s", kdcl_last_error());
        x = oo[i];
        free(oo);
        free(tmp);
    }
    return total;
}

/* to_json, from_json: equal spec; to_json again: the same text; check_json_shapes accepts it. */
static void roundtrip(const kdcl_model_spec *s, kdcl_shape3 in, const char *what)
{
    char *j = kdcl_spec_to_json(s, in);
    ck_assert_msg(j != NULL, "%s: to_json: %s", what, kdcl_last_error());
    kdcl_model_spec b;
    ck_assert_msg(kdcl_model_spec_from_json(j, &b) == KDCL_OK, "%s: from_json: %s\n%s", what,
                  kdcl_last_error(), j);
    assert_spec_eq(s, &b, what);
    char *j2 = kdcl_spec_to_json(&b, in);
    ck_assert_ptr_nonnull(j2);
    ck_assert_str_eq(j, j2);
    ck_assert_msg(kdcl_spec_check_json_shapes(j, &b, in) == KDCL_OK, "%s: check_json_shapes: %s", what,
                  kdcl_last_error());
    free(j);
    free(j2);
    kdcl_model_spec_free(&b);
}

START_TEST(test_legacy)
{
    kdcl_model_spec s = parse_ok("784-1200-1200-10", 0);
    ck_assert_uint_eq(s.n, 6);
    ck_assert_uint_eq(s.in_features, 784);
    const kdcl_layer_kind kinds[] = {KDCL_LAYER_FLATTEN, KDCL_LAYER_LINEAR, KDCL_LAYER_RELU,
                                     KDCL_LAYER_LINEAR,  KDCL_LAYER_RELU,   KDCL_LAYER_LINEAR};
    for (size_t i = 0; i < 6; i++) ck_assert_int_eq(s.layers[i].kind, kinds[i]);
    ck_assert_uint_eq(s.layers[1].out, 1200);
    ck_assert_uint_eq(s.layers[3].out, 1200);
    ck_assert_uint_eq(s.layers[5].out, 10);
    ck_assert_int_eq(s.layers[5].bias, 1);
    kdcl_shape3 o[6];
    ck_assert_int_eq(kdcl_spec_infer_model(&s, shp(1, 28, 28), o), KDCL_OK);
    ck_assert(o[0].flat && o[0].c == 784);
    ck_assert(o[5].flat && o[5].c == 10);
    ck_assert_uint_eq(count_params(s.layers, s.n, shp(1, 28, 28)),
                      784 * 1200 + 1200 + 1200 * 1200 + 1200 + 12010);
    roundtrip(&s, shp(1, 28, 28), "784-1200-1200-10");
    kdcl_model_spec_free(&s);
    ck_assert_ptr_null(s.layers);

    /* 'x' as a separator, surrounding whitespace, 17 sizes */
    kdcl_model_spec a = parse_ok("784x10", 0), b = parse_ok(" 784-10\n", 0);
    assert_spec_eq(&a, &b, "784x10");
    kdcl_model_spec_free(&a);
    kdcl_model_spec_free(&b);
    a = parse_ok("1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16-17", 0);
    ck_assert_uint_eq(a.n, 1 + 16 + 15);
    kdcl_model_spec_free(&a);
    /* the bad strings of kdcl_arch_parse's test */
    const char *bad[] = {"",
                         "784",
                         "784-",
                         "-10",
                         "784--10",
                         "784-0-10",
                         "784-abc-10",
                         "784-10x",
                         "784 10",
                         "784-99999999-10",
                         "1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1",
                         "784-1000001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_bad(bad[i], 10, "");
    expect_bad("784-1000001", 10, "'1000001' at position 5 above 1000000");
    expect_bad("1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1", 10, "more than 16 layers");

    /* spec_mlp with dropout == add_dropout on the plain form */
    const size_t sizes[] = {20, 30, 40, 5};
    kdcl_model_spec m, d;
    ck_assert_int_eq(kdcl_model_spec_mlp(sizes, 4, 0.2f, 0.5f, &m), KDCL_OK);
    ck_assert_uint_eq(m.n, 1 + 1 + 3 + 2 + 2);
    ck_assert_int_eq(m.layers[1].kind, KDCL_LAYER_DROPOUT);
    ck_assert(m.layers[1].p == 0.2f);
    ck_assert_int_eq(m.layers[4].kind, KDCL_LAYER_DROPOUT);
    ck_assert(m.layers[4].p == 0.5f);
    ck_assert_int_eq(kdcl_model_spec_mlp(sizes, 4, 0, 0, &d), KDCL_OK);
    ck_assert_int_eq(kdcl_model_spec_add_dropout(&d, 0.2f, 0.5f), KDCL_OK);
    assert_spec_eq(&m, &d, "add_dropout");
    roundtrip(&m, shp(20, 1, 1), "mlp with dropout");
    /* again: the rates are set, nothing inserted */
    ck_assert_int_eq(kdcl_model_spec_add_dropout(&d, 0.1f, 0.3f), KDCL_OK);
    ck_assert_uint_eq(d.n, m.n);
    ck_assert(d.layers[1].p == 0.1f && d.layers[4].p == 0.3f && d.layers[7].p == 0.3f);
    ck_assert_int_eq(kdcl_model_spec_add_dropout(&d, 1.0f, 0.3f), KDCL_ERR_INVALID_ARG);
    kdcl_model_spec_free(&m);
    kdcl_model_spec_free(&d);
    ck_assert_int_eq(kdcl_model_spec_mlp(sizes, 1, 0, 0, &m), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_model_spec_mlp(sizes, 4, -0.1f, 0, &m), KDCL_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_every_kind)
{
    const char *txt =
        "conv(8,3x1,s=2x1,p=1x0,bias=0),bn(eps=1e-3,m=0.05),relu,maxpool(3,s=2,p=1),avgpool(2),"
        "res(conv(8,3,p=1);conv(8,1)),gap,flatten,dropout(0.25),linear(K,bias=0),bn,linear(classes)";
    kdcl_model_spec s = parse_ok(txt, 5);
    ck_assert_uint_eq(s.n, 12);
    ck_assert_uint_eq(s.in_features, 0);
    const kdcl_layer_spec *l = s.layers;
    ck_assert_int_eq(l[0].kind, KDCL_LAYER_CONV2D);
    ck_assert(l[0].out == 8 && l[0].kh == 3 && l[0].kw == 1 && l[0].sh == 2 && l[0].sw == 1 &&
              l[0].ph == 1 && l[0].pw == 0 && l[0].bias == 0);
    ck_assert_int_eq(l[1].kind, KDCL_LAYER_BATCHNORM);
    ck_assert(l[1].eps == 1e-3f && l[1].momentum == 0.05f);
    ck_assert_int_eq(l[2].kind, KDCL_LAYER_RELU);
    ck_assert_int_eq(l[3].kind, KDCL_LAYER_MAXPOOL2D);
    ck_assert(l[3].kh == 3 && l[3].kw == 3 && l[3].sh == 2 && l[3].sw == 2 && l[3].ph == 1 && l[3].pw == 1);
    ck_assert_int_eq(l[4].kind, KDCL_LAYER_AVGPOOL2D);
    ck_assert(l[4].kh == 2 && l[4].sh == 0 && l[4].sw == 0 && l[4].ph == 0);
    ck_assert_int_eq(l[5].kind, KDCL_LAYER_RESIDUAL);
    ck_assert(l[5].n_body == 1 && l[5].n_shortcut == 1);
    ck_assert(l[5].body[0].kind == KDCL_LAYER_CONV2D && l[5].body[0].out == 8 && l[5].body[0].sh == 1 &&
              l[5].body[0].ph == 1 && l[5].body[0].bias == 1);
    ck_assert(l[5].shortcut[0].kh == 1 && l[5].shortcut[0].ph == 0);
    ck_assert_int_eq(l[6].kind, KDCL_LAYER_GLOBAL_AVGPOOL);
    ck_assert_int_eq(l[7].kind, KDCL_LAYER_FLATTEN);
    ck_assert_int_eq(l[8].kind, KDCL_LAYER_DROPOUT);
    ck_assert(l[8].p == 0.25f);
    ck_assert(l[9].kind == KDCL_LAYER_LINEAR && l[9].out == 5 && l[9].bias == 0);
    ck_assert(l[10].kind == KDCL_LAYER_BATCHNORM && l[10].eps == 1e-5f && l[10].momentum == 0.1f);
    ck_assert(l[11].kind == KDCL_LAYER_LINEAR && l[11].out == 5 && l[11].bias == 1);

    kdcl_shape3 o[12];
    ck_assert_msg(kdcl_spec_infer(s.layers, s.n, shp(3, 16, 16), o) == KDCL_OK, "%s", kdcl_last_error());
    const size_t want[12][4] = {{8, 8, 16, 0}, {8, 8, 16, 0}, {8, 8, 16, 0}, {8, 4, 8, 0},
                                {8, 2, 4, 0},  {8, 2, 4, 0},  {8, 1, 1, 0},  {8, 1, 1, 1},
                                {8, 1, 1, 1},  {5, 1, 1, 1},  {5, 1, 1, 1},  {5, 1, 1, 1}};
    for (size_t i = 0; i < 12; i++)
        ck_assert_msg(o[i].c == want[i][0] && o[i].h == want[i][1] && o[i].w == want[i][2] &&
                          (size_t)o[i].flat == want[i][3],
                      "layer %zu: [%zu, %zu, %zu] flat %d", i + 1, o[i].c, o[i].h, o[i].w, o[i].flat);
    roundtrip(&s, shp(3, 16, 16), "every kind");
    char *j = kdcl_spec_to_json(&s, shp(3, 16, 16));
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(strstr(
        j, "\"type\":\"BatchNorm2d\",\"args\":{\"num_features\":8,\"eps\":0.001,\"momentum\":0.05}"));
    ck_assert_ptr_nonnull(strstr(j, "\"type\":\"BatchNorm1d\",\"args\":{\"num_features\":5,"));
    ck_assert_ptr_nonnull(strstr(j,
                                 "{\"type\":\"AvgPool2d\",\"args\":{\"kernel_size\":[2,2],\"stride\":null,"
                                 "\"padding\":[0,0],\"count_include_pad\":true}}"));
    ck_assert_ptr_nonnull(strstr(j, "\"p\":0.25"));
    ck_assert_ptr_nonnull(strstr(j, "{\"type\":\"AdaptiveAvgPool2d\",\"args\":{\"output_size\":1}}"));
    ck_assert_ptr_nonnull(
        strstr(j, "{\"type\":\"Linear\",\"args\":{\"in_features\":8,\"out_features\":5,\"bias\":false}}"));
    free(j);

    /* whitespace around every token */
    kdcl_model_spec w =
        parse_ok(" conv ( 8 , 3x1 , s = 2x1 , p=1x0 , bias=0 ) ,\tbn( eps=1e-3 , m = 0.05 ),relu ,"
                 "maxpool(3,s=2,p=1),avgpool( 2 ),res( conv(8,3,p=1) ; conv(8,1) ) , gap,flatten,"
                 "dropout( 0.25 ),linear(K,bias=0),bn,linear( classes )\n",
                 5);
    assert_spec_eq(&s, &w, "whitespace");
    kdcl_model_spec_free(&w);

    /* copy */
    kdcl_model_spec c;
    ck_assert_int_eq(kdcl_model_spec_copy(&s, &c), KDCL_OK);
    assert_spec_eq(&s, &c, "copy");
    ck_assert_ptr_ne(c.layers[5].body, s.layers[5].body);
    kdcl_model_spec_free(&s);
    kdcl_model_spec_free(&c);
    kdcl_model_spec_free(&c); /* twice is harmless */

    /* the defaults */
    kdcl_layer_spec d = kdcl_layer_spec_default(KDCL_LAYER_CONV2D);
    ck_assert(d.bias == 1 && d.sh == 1 && d.sw == 1 && d.ph == 0 && d.body == NULL);
    d = kdcl_layer_spec_default(KDCL_LAYER_MAXPOOL2D);
    ck_assert(d.sh == 0 && d.sw == 0);
    d = kdcl_layer_spec_default(KDCL_LAYER_BATCHNORM);
    ck_assert(d.eps == 1e-5f && d.momentum == 0.1f);
}
END_TEST

START_TEST(test_presets)
{
    kdcl_model_spec s = parse_ok("lenet5", 10);
    kdcl_model_spec g =
        parse_ok("conv(6,5,p=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,linear(120),"
                 "relu,linear(84),relu,linear(K)",
                 10);
    assert_spec_eq(&s, &g, "lenet5");
    kdcl_model_spec_free(&g);
    kdcl_shape3 o[64];
    ck_assert_int_eq(kdcl_spec_infer(s.layers, s.n, shp(1, 28, 28), o), KDCL_OK);
    ck_assert(o[6].flat && o[6].c == 400);
    ck_assert(o[s.n - 1].flat && o[s.n - 1].c == 10);
    ck_assert_uint_eq(count_params(s.layers, s.n, shp(1, 28, 28)), 61706);
    roundtrip(&s, shp(1, 28, 28), "lenet5");
    /* add_dropout on a CNN: input dropout first, hidden after linear+relu (twice) */
    ck_assert_int_eq(kdcl_model_spec_add_dropout(&s, 0.1f, 0.4f), KDCL_OK);
    ck_assert_uint_eq(s.n, 15);
    ck_assert(s.layers[0].kind == KDCL_LAYER_DROPOUT && s.layers[0].p == 0.1f);
    ck_assert(s.layers[10].kind == KDCL_LAYER_DROPOUT && s.layers[10].p == 0.4f);
    ck_assert(s.layers[13].kind == KDCL_LAYER_DROPOUT && s.layers[13].p == 0.4f);
    kdcl_model_spec_free(&s);

    s = parse_ok(" cnn-small ", 10);
    ck_assert_uint_eq(s.n, 13);
    ck_assert_int_eq(kdcl_spec_infer(s.layers, s.n, shp(1, 28, 28), o), KDCL_OK);
    ck_assert(o[8].flat && o[8].c == 64 * 7 * 7);
    ck_assert(o[s.n - 1].c == 10);
    ck_assert_uint_eq(count_params(s.layers, s.n, shp(1, 28, 28)),
                      32 * 9 + 64 + 64 * 32 * 9 + 128 + 3136 * 128 + 128 + 128 * 10 + 10);
    roundtrip(&s, shp(1, 28, 28), "cnn-small");
    kdcl_model_spec_free(&s);

    s = parse_ok("cnn-medium", 10);
    ck_assert_uint_eq(s.n, 16);
    ck_assert_int_eq(kdcl_spec_infer(s.layers, s.n, shp(1, 28, 28), o), KDCL_OK);
    ck_assert(o[11].flat && o[11].c == 64 * 7 * 7);
    ck_assert(s.layers[14].kind == KDCL_LAYER_DROPOUT && s.layers[14].p == 0.4f);
    ck_assert_uint_eq(count_params(s.layers, s.n, shp(1, 28, 28)),
                      32 * 9 + 64 + 64 * 32 * 9 + 128 + 64 * 64 * 9 + 128 + 3136 * 256 + 256 + 256 * 10 + 10);
    roundtrip(&s, shp(1, 28, 28), "cnn-medium");
    kdcl_model_spec_free(&s);

    s = parse_ok("resnet20", 10);
    ck_assert_uint_eq(s.n, 3 + 9 * 2 + 3);
    size_t res = 0, proj = 0;
    for (size_t i = 0; i < s.n; i++)
        if (s.layers[i].kind == KDCL_LAYER_RESIDUAL) {
            res++;
            ck_assert_uint_eq(s.layers[i].n_body, 5);
            ck_assert_int_eq(s.layers[i + 1].kind, KDCL_LAYER_RELU);
            if (s.layers[i].n_shortcut) {
                proj++;
                ck_assert_uint_eq(s.layers[i].n_shortcut, 2);
                ck_assert(s.layers[i].shortcut[0].kh == 1 && s.layers[i].shortcut[0].sh == 2 &&
                          s.layers[i].shortcut[0].bias == 0);
                ck_assert(s.layers[i].body[0].sh == 2);
            }
        }
    ck_assert_uint_eq(res, 9);
    ck_assert_uint_eq(proj, 2);
    ck_assert_int_eq(kdcl_spec_infer(s.layers, s.n, shp(3, 32, 32), o), KDCL_OK);
    ck_assert(o[2].c == 16 && o[2].h == 32);
    ck_assert(o[8].c == 16 && o[8].h == 32);                 /* end of stage 1 */
    ck_assert(o[14].c == 32 && o[14].h == 16);               /* end of stage 2 */
    ck_assert(o[20].c == 64 && o[20].h == 8);                /* end of stage 3 */
    ck_assert(o[21].c == 64 && o[21].h == 1 && !o[21].flat); /* gap */
    ck_assert(o[22].c == 64 && o[22].flat);
    ck_assert(o[23].c == 10 && o[23].flat);
    /* 269,722 with option A's parameter-free shortcuts, plus the two projections */
    ck_assert_uint_eq(count_params(s.layers, s.n, shp(3, 32, 32)),
                      269722 + (16 * 32 + 64) + (32 * 64 + 128));
    roundtrip(&s, shp(3, 32, 32), "resnet20");
    kdcl_model_spec c;
    ck_assert_int_eq(kdcl_model_spec_copy(&s, &c), KDCL_OK);
    assert_spec_eq(&s, &c, "resnet20 copy");
    kdcl_model_spec_free(&c);
    kdcl_model_spec_free(&s);

    s = parse_ok("resnet20", 100);
    ck_assert_int_eq(kdcl_spec_infer(s.layers, s.n, shp(3, 32, 32), o), KDCL_OK);
    ck_assert_uint_eq(o[s.n - 1].c, 100);
    kdcl_model_spec_free(&s);
    expect_bad("lenet5", 0, "needs the number of classes");
}
END_TEST

START_TEST(test_nested_and_limits)
{
    const char *txt = "conv(4,3,p=1),res(res(conv(4,3,p=1),bn;conv(4,1)),relu;avgpool(3,s=1,p=1)),"
                      "res(relu,res(relu)),flatten,linear(3)";
    kdcl_model_spec s = parse_ok(txt, 3);
    ck_assert_uint_eq(s.n, 5);
    ck_assert(s.layers[1].n_body == 2 && s.layers[1].n_shortcut == 1);
    ck_assert(s.layers[1].body[0].kind == KDCL_LAYER_RESIDUAL && s.layers[1].body[0].n_body == 2);
    ck_assert(s.layers[1].shortcut[0].kind == KDCL_LAYER_AVGPOOL2D);
    roundtrip(&s, shp(2, 8, 8), "nested residuals");
    kdcl_model_spec_free(&s);

    /* 256 layers in all is the limit, nested ones and blocks counted */
    char buf[4096] = "";
    for (int i = 0; i < 255; i++) strcat(buf, "relu,");
    strcat(buf, "flatten");
    s = parse_ok(buf, 0);
    ck_assert_uint_eq(s.n, 256);
    kdcl_model_spec_free(&s);
    strcpy(buf, "res(relu),");
    for (int i = 0; i < 254; i++) strcat(buf, "relu,");
    strcat(buf, "flatten");
    expect_bad(buf, 0, "more than 256 layers");
    /* depth 8 is allowed, 9 is not */
    buf[0] = '\0';
    for (int i = 0; i < 8; i++) strcat(buf, "res(");
    strcat(buf, "relu");
    for (int i = 0; i < 8; i++) strcat(buf, ")");
    strcat(buf, ",flatten");
    s = parse_ok(buf, 0);
    roundtrip(&s, shp(2, 3, 3), "depth 8");
    kdcl_model_spec_free(&s);
    expect_bad("res(res(res(res(res(res(res(res(res(relu)))))))))", 0,
               "nested deeper than 8 at position 33");
}
END_TEST

START_TEST(test_malformed)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"conv(32", "'(' at position 5 is never closed"},
        {"conv(,3)", "expected an argument of 'conv' at position 6, got ','"},
        {"conv(32,0)", "kernel size '0' at position 9 out of range (1..64)"},
        {"linear(10", "'(' at position 7 is never closed"},
        {"relu(", "relu takes no arguments: '(' at position 5"},
        {"dropout(1)", "dropout rate '1' at position 9 must be in [0, 1)"},
        {"dropout(-0.1)", "dropout rate '-0.1' at position 9 must be in [0, 1)"},
        {"res()", "expected a layer at position 5, got ')'"},
        {"res(conv(8,3);)", "expected a layer at position 15, got ')'"},
        {"maxpool(2,s=0)", "stride '0' at position 13 out of range (1..64)"},
        {"conv(8,3,p=3)", "padding '3' at position 12 must be smaller than the kernel 3x3"},
        {"conv(8,3,p=1x4)", "padding '1x4' at position 12 must be smaller than the kernel"},
        {"conv(8,3,p=64)", "padding '64' at position 12 out of range (0..63)"},
        {"foo", "unknown layer 'foo' at position 1 (layers: conv,"},
        {"conv(8,3),,relu", "expected a layer at position 11, got ','"},
        {"conv(8,3),relu,", "expected a layer at position 16, got end of text"},
        {"784-", "expected a layer size at position 5, got end of text"},
        {"0-10", "layer size 0 at position 1"},
        {"784-10-", "expected a layer size at position 8"},
        {"784 10", "unexpected ' ' at position 4"},
        {"conv(8,3))", "unexpected ')' at position 10"},
        {"res(relu", "'(' of res at position 4 is never closed"},
        {"res(relu;relu", "'(' of res at position 4 is never closed"},
        {"res(relu;relu;relu)", "unexpected second ';' at position 14"},
        {"relu;gap", "unexpected ';' at position 5"},
        {"(relu)", "expected a layer at position 1, got '('"},
        {"resnet18", "unknown layer 'resnet18' at position 1"},
        {"lenet", "unknown layer 'lenet' at position 1"},
        {"lenet5,relu", "preset 'lenet5' at position 1 cannot be combined"},
        {"Conv(8,3)", "names are lowercase"},
        {"conv(99999999999999999999,3)",
         "output channels '99999999999999999999' at position 6 out of range"},
        {"linear(10000000000000000000000000000000000000000000000000000)", "' at position 8 out of range"},
        {"784-99999999999999999999-10", "layer size '99999999999999999999' at position 5 above 1000000"},
        {"conv(32,5,q=2)", "unknown option 'q' at position 11 (conv takes s=, p=, bias=)"},
        {"dropout(p=0.1)", "unknown option 'p' at position 9 (dropout takes no options)"},
        {"conv(8,3,bias=2)", "bias '2' at position 15 must be 0 or 1"},
        {"maxpool(3,p=2)", "padding '2' at position 13 must be at most half the kernel"},
        {"linear(K)", "'K' at position 8 needs the number of classes"},
        {"conv(8,65)", "kernel size '65' at position 8 out of range (1..64)"},
        {"conv(8,3x)", "bad kernel size '3x' at position 8"},
        {"conv(8,x3)", "bad kernel size 'x3' at position 8"},
        {"conv(8,3,s=1x65)", "stride '1x65' at position 12 out of range"},
        {"conv(k,3)", "bad output channels 'k' at position 6"},
        {"dropout(0.5e)", "bad dropout rate '0.5e' at position 9"},
        {"dropout(nan)", "bad dropout rate 'nan'"},
        {"dropout(0x0.8p0)", "bad dropout rate '0x0.8p0'"},
        {"dropout()", "expected an argument of 'dropout' at position 9, got ')'"},
        {"bn(eps=0)", "eps '0' at position 8 must be in (0, 1]"},
        {"bn(m=2)", "momentum '2' at position 6 must be in [0, 1]"},
        {"bn(0.1)", "too many values for bn: '0.1' at position 4"},
        {"conv(8,3,s=2,s=1)", "option 's' given twice, again at position 14"},
        {"conv(8)", "conv at position 1 needs 2 values"},
        {"conv", "conv at position 1 needs arguments"},
        {"linear(10,20)", "too many values for linear: '20' at position 11"},
        {"conv(s=2,8,3)", "value '8' at position 10 after options"},
        {"gap(2)", "gap takes no arguments: '(' at position 4"},
        {"linear(10,bias=)", "missing value for option 'bias' at position 16, got ')'"},
        {"linear(=3)", "missing option name before '=' at position 8"},
        {"linear(10(", "unexpected '(' at position 10 in the arguments of 'linear'"},
        {"conv(1,1,1)", "too many values for conv: '1' at position 10"},
        {"conv(1,1,1,1,1,1,1,1,1)", "too many arguments at position 22"},
        {"res", "res at position 1 needs arguments"},
        {"relu,\xff", "expected a layer at position 6"},
        {"  ", "empty architecture"},
        {"@", "no file name after '@'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_bad(cases[i].text, 0, cases[i].want);
    kdcl_model_spec s;
    ck_assert_int_eq(kdcl_model_spec_parse(NULL, 10, &s), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_model_spec_parse("relu", 10, NULL), KDCL_ERR_INVALID_ARG);
    /* the message quotes the text */
    expect_bad(
        "conv(32,5,q=2)", 10,
        "architecture 'conv(32,5,q=2)': unknown option 'q' at position 11 (conv takes s=, p=, bias=)");
}
END_TEST

static void expect_misfit(const char *text, kdcl_shape3 in, const char *want)
{
    kdcl_model_spec s = parse_ok(text, 2);
    kdcl_shape3 *o = malloc(s.n * sizeof *o);
    kdcl_status st = kdcl_spec_infer_model(&s, in, o);
    ck_assert_msg(st == KDCL_ERR_INVALID_ARG, "'%s' fits [%zu, %zu, %zu]", text, in.c, in.h, in.w);
    ck_assert_msg(strstr(kdcl_last_error(), want), "'%s': message '%s' lacks '%s'", text, kdcl_last_error(),
                  want);
    ck_assert_ptr_null(kdcl_spec_to_json(&s, in));
    free(o);
    kdcl_model_spec_free(&s);
}

START_TEST(test_misfits)
{
    expect_misfit("conv(8,5),flatten,linear(2)", shp(1, 2, 2),
                  "layer 1 (Conv2d 8@5x5): kernel 5x5 does not fit a 2x2 input with padding 0");
    expect_misfit("conv(4,3),linear(10)", shp(1, 8, 8),
                  "layer 2 (Linear 10): needs a flat input but gets [4, 6, 6] (add flatten before it)");
    expect_misfit("100-10", shp(1, 28, 28),
                  "layer 2 (Linear 10): the architecture's input size 100 does not match the 784 features");
    expect_misfit(
        "conv(8,3,p=1),res(conv(16,3,p=1)),flatten,linear(2)", shp(1, 8, 8),
        "layer 2 (Residual): the body gives [16, 8, 8] but the identity shortcut gives [8, 8, 8]");
    expect_misfit("res(conv(8,3,p=1);conv(8,1,s=2)),flatten,linear(2)", shp(1, 8, 8),
                  "layer 1 (Residual): the body gives [8, 8, 8] but the shortcut gives [8, 4, 4]");
    expect_misfit("relu,res(conv(4,9),relu),flatten,linear(2)", shp(4, 4, 4),
                  "layer 2 (Residual) body layer 1 (Conv2d 4@9x9): kernel 9x9 does not fit a 4x4 input");
    expect_misfit(
        "res(relu,res(relu;maxpool(3))),flatten,linear(2)", shp(4, 2, 2),
        "layer 1 (Residual) body layer 2 (Residual) shortcut layer 1 (MaxPool2d 3x3): kernel 3x3 does not "
        "fit a 2x2 input");
    expect_misfit("conv(4,3)", shp(1, 8, 8),
                  "layer 1 (Conv2d 4@3x3): the model ends in a [4, 6, 6] output");
    expect_misfit("flatten,gap,linear(2)", shp(1, 8, 8),
                  "layer 2 (AdaptiveAvgPool2d): needs a [C, H, W] input");
    expect_misfit("flatten,conv(2,1),flatten", shp(1, 8, 8),
                  "layer 2 (Conv2d 2@1x1): needs a [C, H, W] input");
    expect_misfit("maxpool(3),flatten,linear(2)", shp(1, 2, 2),
                  "layer 1 (MaxPool2d 3x3): kernel 3x3 does not fit");
    expect_misfit("conv(2,3,s=2),conv(2,3,s=2),conv(2,3),flatten,linear(2)", shp(1, 8, 8),
                  "layer 3 (Conv2d 2@3x3): kernel 3x3 does not fit a 1x1 input");
    expect_misfit("flatten,linear(1000000),linear(1000000)", shp(1, 8, 8),
                  "layer 3 (Linear 1000000): a "
                  "1000000x1000000 weight has 2^31 elements or more");

    /* fits: the A-B-K form on data of the right size, padding that makes a kernel fit */
    kdcl_model_spec s = parse_ok("3072-10", 0);
    kdcl_shape3 o[8];
    ck_assert_int_eq(kdcl_spec_infer_model(&s, shp(3, 32, 32), o), KDCL_OK);
    kdcl_model_spec_free(&s);
    s = parse_ok("conv(1,5,p=2),flatten", 0);
    ck_assert_int_eq(kdcl_spec_infer_model(&s, shp(1, 2, 2), o), KDCL_OK);
    ck_assert(o[1].c == 4);
    kdcl_model_spec_free(&s);

    /* specs built in code are checked too */
    kdcl_layer_spec L[3] = {kdcl_layer_spec_default(KDCL_LAYER_FLATTEN),
                            kdcl_layer_spec_default(KDCL_LAYER_LINEAR),
                            kdcl_layer_spec_default(KDCL_LAYER_DROPOUT)};
    ck_assert_int_eq(kdcl_spec_infer(L, 2, shp(1, 4, 4), o), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "layer 2 (Linear 0): out_features 0 out of range"));
    L[1].out = 3;
    L[2].p = 1.0f;
    ck_assert_int_eq(kdcl_spec_infer(L, 3, shp(1, 4, 4), o), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "layer 3 (Dropout 1): rate 1 must be in [0, 1)"));
    ck_assert_int_eq(kdcl_spec_infer(L, 0, shp(1, 4, 4), o), KDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kdcl_spec_infer(L, 2, shp(0, 4, 4), o), KDCL_ERR_INVALID_ARG);
    kdcl_layer_spec r = kdcl_layer_spec_default(KDCL_LAYER_RESIDUAL);
    ck_assert_int_eq(kdcl_spec_infer(&r, 1, shp(1, 4, 4), o), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "layer 1 (Residual): the body is empty"));
}
END_TEST

static void expect_bad_json(const char *json, const char *want)
{
    kdcl_model_spec s;
    kdcl_status st = kdcl_model_spec_from_json(json, &s);
    ck_assert_msg(st == KDCL_ERR_INVALID_ARG, "accepted %s", json);
    ck_assert_msg(strstr(kdcl_last_error(), want), "%s: message '%s' lacks '%s'", json, kdcl_last_error(),
                  want);
    ck_assert_ptr_null(s.layers);
}

START_TEST(test_json_errors)
{
    expect_bad_json("[{\"type\":\"Flatten\"},{\"type\":\"Conv3d\",\"args\":{}}]",
                    "kdcl.model: layer 2 (Conv3d): unknown layer type");
    expect_bad_json("{\"type\":\"ReLU\"}", "expected a list of layers");
    expect_bad_json("\"relu\"", "expected a list of layers");
    expect_bad_json("[]", "empty list of layers");
    expect_bad_json("[{", "not valid JSON");
    expect_bad_json("[{\"type\":\"ReLU\"}] x", "not valid JSON");
    expect_bad_json("[1]", "layer 1: not an object");
    expect_bad_json("[{\"args\":{}}]", "layer 1: missing \"type\" string");
    expect_bad_json("[{\"type\":\"Linear\"}]", "layer 1 (Linear): missing \"args\"");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"in_features\":4}}]",
                    "missing argument 'out_features'");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"out_features\":2.5}}]",
                    "'out_features' must be an integer");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"out_features\":\"4\"}}]",
                    "'out_features' must be an integer");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"out_features\":0}}]",
                    "'out_features' 0 out of range");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"out_features\":4,\"bias\":1}}]",
                    "'bias' must be true or false");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"out_features\":4,\"foo\":1}}]",
                    "unknown argument 'foo'");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":{\"out_features\":4,\"out_features\":5}}]",
                    "given twice");
    expect_bad_json("[{\"type\":\"Linear\",\"args\":[4]}]", "\"args\" must be an object");
    expect_bad_json("[{\"type\":\"ReLU\",\"extra\":1}]", "unknown key 'extra'");
    expect_bad_json("[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":[3]}}]",
                    "'kernel_size' must be an integer or a list of 2 integers");
    expect_bad_json("[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":\"3\"}}]",
                    "'kernel_size' must be an integer or a list of 2 integers");
    expect_bad_json("[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":[3,0]}}]",
                    "'kernel_size' out of range (1..64)");
    expect_bad_json("[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4}}]",
                    "missing argument 'kernel_size'");
    expect_bad_json(
        "[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":3,\"padding\":\"same\"}}]",
        "not a string");
    expect_bad_json("[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":3,\"padding\":3}}]",
                    "padding must be smaller than the kernel");
    expect_bad_json("[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":3,\"groups\":2}}]",
                    "only groups=1 is supported");
    expect_bad_json(
        "[{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":3,\"dilation\":[1,2]}}]",
        "only dilation=1 is supported");
    expect_bad_json("[{\"type\":\"AvgPool2d\",\"args\":{\"kernel_size\":2,\"count_include_pad\":false}}]",
                    "only count_include_pad=true is supported");
    expect_bad_json("[{\"type\":\"MaxPool2d\",\"args\":{\"kernel_size\":2,\"ceil_mode\":true}}]",
                    "only ceil_mode=false is supported");
    expect_bad_json("[{\"type\":\"MaxPool2d\",\"args\":{\"kernel_size\":3,\"padding\":2}}]",
                    "padding must be at most half the kernel");
    expect_bad_json("[{\"type\":\"MaxPool2d\",\"args\":{\"kernel_size\":2,\"stride\":0}}]",
                    "'stride' out of range");
    expect_bad_json("[{\"type\":\"AdaptiveAvgPool2d\",\"args\":{\"output_size\":2}}]",
                    "only output_size 1");
    expect_bad_json("[{\"type\":\"AdaptiveAvgPool2d\"}]", "missing \"args\"");
    expect_bad_json("[{\"type\":\"Dropout\",\"args\":{\"p\":1}}]", "p 1 must be in [0, 1)");
    expect_bad_json("[{\"type\":\"Dropout\",\"args\":{\"p\":\"0.5\"}}]", "'p' must be a number");
    expect_bad_json("[{\"type\":\"BatchNorm2d\",\"args\":{\"num_features\":4,\"momentum\":null}}]",
                    "not supported");
    expect_bad_json("[{\"type\":\"BatchNorm1d\",\"args\":{\"num_features\":4,\"eps\":0}}]",
                    "eps 0 must be in (0, 1]");
    expect_bad_json("[{\"type\":\"BatchNorm1d\",\"args\":{\"num_features\":-4}}]",
                    "'num_features' -4 out of range");
    expect_bad_json("[{\"type\":\"Flatten\",\"args\":{\"start_dim\":0}}]", "only start_dim=1");
    expect_bad_json("[{\"type\":\"Residual\",\"body\":[],\"shortcut\":null}]",
                    "\"body\" must be a non-empty list");
    expect_bad_json("[{\"type\":\"Residual\",\"shortcut\":null}]", "\"body\" must be a non-empty list");
    expect_bad_json("[{\"type\":\"Residual\",\"body\":[{\"type\":\"ReLU\"}],\"shortcut\":3}]",
                    "\"shortcut\" must be a list or null");
    expect_bad_json(
        "[{\"type\":\"ReLU\"},{\"type\":\"Residual\",\"body\":[{\"type\":\"ReLU\"},"
        "{\"type\":\"Residual\",\"body\":[{\"type\":\"Conv3d\"}]}]}]",
        "kdcl.model: layer 2 (Residual) body layer 2 (Residual) body layer 1 (Conv3d): unknown layer type");
    char deep[2048] = "[";
    for (int i = 0; i < 9; i++) strcat(deep, "{\"type\":\"Residual\",\"body\":[");
    strcat(deep, "{\"type\":\"ReLU\"}");
    for (int i = 0; i < 9; i++) strcat(deep, "]}");
    strcat(deep, "]");
    expect_bad_json(deep, "nested deeper than 8");

    /* minimal JSON: the PyTorch defaults; identity as [] or a missing shortcut */
    kdcl_model_spec s;
    ck_assert_int_eq(kdcl_model_spec_from_json(
                         "[{\"type\":\"Residual\",\"body\":[{\"type\":\"ReLU\"}],\"shortcut\":[]},"
                         "{\"type\":\"MaxPool2d\",\"args\":{\"kernel_size\":2}},"
                         "{\"type\":\"Dropout\"},{\"type\":\"Flatten\",\"args\":{}},"
                         "{\"type\":\"Conv2d\",\"args\":{\"out_channels\":4,\"kernel_size\":[3,1]}}]",
                         &s),
                     KDCL_OK);
    ck_assert_uint_eq(s.n, 5);
    ck_assert_uint_eq(s.layers[0].n_shortcut, 0);
    ck_assert(s.layers[1].sh == 0 && s.layers[1].ph == 0);
    ck_assert(s.layers[2].p == 0.5f);
    ck_assert(s.layers[4].kh == 3 && s.layers[4].kw == 1 && s.layers[4].sh == 1 && s.layers[4].bias == 1);
    kdcl_model_spec_free(&s);

    /* input sizes in the JSON against the inferred shapes */
    s = parse_ok("lenet5", 10);
    char *j = kdcl_spec_to_json(&s, shp(1, 28, 28));
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &s, shp(1, 28, 28)), KDCL_OK);
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &s, shp(3, 28, 28)), KDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(kdcl_last_error(),
                         "kdcl.model: layer 1 (Conv2d 6@5x5): in_channels 1 but its input has 3 channels"),
                  "%s", kdcl_last_error());
    char *at = strstr(j, "\"in_features\":400");
    ck_assert_ptr_nonnull(at);
    at[14] = '5';
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &s, shp(1, 28, 28)), KDCL_ERR_INVALID_ARG);
    ck_assert_msg(
        strstr(kdcl_last_error(),
               "kdcl.model: layer 8 (Linear 120): in_features 500 but its input has 400 features"),
        "%s", kdcl_last_error());
    kdcl_model_spec t;
    ck_assert_int_eq(kdcl_model_spec_from_json(j, &t),
                     KDCL_OK); /* from_json alone does not know the input */
    assert_spec_eq(&s, &t, "lenet5 with a wrong in_features");
    kdcl_model_spec_free(&t);
    free(j);
    kdcl_model_spec_free(&s);

    s = parse_ok("conv(4,3),bn,res(conv(4,1),bn),flatten,bn,linear(2)", 2);
    j = kdcl_spec_to_json(&s, shp(1, 5, 5));
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &s, shp(1, 5, 5)), KDCL_OK);
    at = strstr(j, "\"BatchNorm2d\"");
    ck_assert_ptr_nonnull(at);
    at[10] = '1';
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &s, shp(1, 5, 5)), KDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(kdcl_last_error(),
                         "layer 2 (BatchNorm1d): its input is [C, H, W], so it must be BatchNorm2d"),
                  "%s", kdcl_last_error());
    at[10] = '2';
    at = strstr(j, "\"num_features\":4");
    ck_assert_ptr_nonnull(at);
    at = strstr(at + 1, "\"num_features\":4");
    ck_assert_ptr_nonnull(at); /* the second one: inside the residual block */
    at[15] = '7';
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &s, shp(1, 5, 5)), KDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(kdcl_last_error(),
                         "layer 3 (Residual) body layer 2 (BatchNorm): num_features 7 but its input "
                         "has 4 features"),
                  "%s", kdcl_last_error());
    kdcl_model_spec o = parse_ok("conv(4,3),bn,res(conv(4,1)),flatten,bn,linear(2)", 2);
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &o, shp(1, 5, 5)), KDCL_ERR_INVALID_ARG);
    kdcl_model_spec_free(&o);
    free(j);
    kdcl_model_spec_free(&s);
}
END_TEST

START_TEST(test_file)
{
    kdcl_model_spec s = parse_ok("resnet20", 10);
    char *j = kdcl_spec_to_json(&s, shp(3, 32, 32));
    ck_assert_ptr_nonnull(j);
    const char *path = tu_path("resnet20.json");
    ck_assert_int_eq(tu_write_file(path, j, strlen(j)), 0);
    char arg[4200];
    snprintf(arg, sizeof arg, " @%s\n", path);
    kdcl_model_spec f = parse_ok(arg, 3); /* n_classes does not matter */
    assert_spec_eq(&s, &f, "@file");
    ck_assert_int_eq(kdcl_spec_check_json_shapes(j, &f, shp(3, 32, 32)), KDCL_OK);
    kdcl_model_spec_free(&f);
    free(j);
    kdcl_model_spec_free(&s);

    const char *missing = tu_path("no-such-dir/none.json");
    snprintf(arg, sizeof arg, "@%s", missing);
    ck_assert_int_eq(kdcl_model_spec_parse(arg, 10, &s), KDCL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), missing));
    const char *badp = tu_path("bad.json");
    const char *bad = "[{\"type\":\"Conv3d\"}]";
    ck_assert_int_eq(tu_write_file(badp, bad, strlen(bad)), 0);
    snprintf(arg, sizeof arg, "@%s", badp);
    ck_assert_int_eq(kdcl_model_spec_parse(arg, 10, &s), KDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), badp));
    ck_assert_ptr_nonnull(strstr(kdcl_last_error(), "layer 1 (Conv3d): unknown layer type"));
    snprintf(arg, sizeof arg, "@%s", tu_tmpdir()); /* a directory */
    ck_assert_int_ne(kdcl_model_spec_parse(arg, 10, &s), KDCL_OK);
    ck_assert_ptr_null(s.layers);
}
END_TEST

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* 1..4 random byte replacements, insertions or deletions (from a set of
 * grammar characters, or any byte 1..255). */
static void mutate(char *buf, size_t cap, uint64_t *st)
{
    static const char alphabet[] = "(),;=x-0123456789Kcs p.e@ \t";
    int m = 1 + (int)(rng(st) % 4);
    for (int i = 0; i < m; i++) {
        size_t n = strlen(buf);
        uint64_t r = rng(st);
        char c = (r >> 8) % 3 ? alphabet[(r >> 16) % (sizeof alphabet - 1)] : (char)(1 + (r >> 16) % 255);
        size_t at = n ? (size_t)((r >> 32) % n) : 0;
        switch (r % 3) {
        case 0:
            if (n) buf[at] = c;
            break;
        case 1:
            if (n + 2 < cap) {
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = c;
            }
            break;
        default:
            if (n) memmove(buf + at, buf + at + 1, n - at);
            break;
        }
    }
}

START_TEST(test_mutations)
{
    static const char *seeds[] = {
        "784-1200-1200-10",
        "conv(8,3x1,s=2x1,p=1x0,bias=0),bn(eps=1e-3,m=0.05),relu,maxpool(3,s=2,p=1),avgpool(2),"
        "res(conv(8,3,p=1);conv(8,1)),gap,flatten,dropout(0.25),linear(K,bias=0),bn,linear(classes)",
        "conv(4,3,p=1),res(res(conv(4,3,p=1),bn;conv(4,1)),relu;avgpool(3,s=1,p=1)),res(relu,res(relu)),"
        "flatten,"
        "linear(3)",
        "conv(6,5,p=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,linear(120),relu,linear(84),relu,"
        "linear(K)",
        "lenet5",
        "resnet20",
    };
    const size_t ns = sizeof seeds / sizeof seeds[0];
    char *jseeds[2];
    kdcl_model_spec a = parse_ok(seeds[1], 10), b = parse_ok(seeds[2], 10);
    jseeds[0] = kdcl_spec_to_json(&a, shp(3, 16, 16));
    jseeds[1] = kdcl_spec_to_json(&b, shp(3, 16, 16));
    ck_assert(jseeds[0] && jseeds[1]);
    kdcl_model_spec_free(&a);
    kdcl_model_spec_free(&b);
    uint64_t st = 0x9E3779B97F4A7C15ull;
    size_t accepted = 0, jaccepted = 0;
    char buf[4096];
    kdcl_shape3 o[300];
    for (int it = 0; it < 4000; it++) {
        snprintf(buf, sizeof buf, "%s", seeds[rng(&st) % ns]);
        mutate(buf, sizeof buf, &st);
        kdcl_model_spec s;
        kdcl_status r = kdcl_model_spec_parse(buf, 10, &s);
        if (r != KDCL_OK) {
            ck_assert_msg(r == KDCL_ERR_INVALID_ARG || r == KDCL_ERR_IO, "'%s': %s", buf,
                          kdcl_status_name(r));
            ck_assert(kdcl_last_error()[0] != '\0');
            ck_assert_ptr_null(s.layers);
            continue;
        }
        accepted++;
        if (kdcl_spec_infer_model(&s, shp(3, 16, 16), o) == KDCL_OK) {
            char *j = kdcl_spec_to_json(&s, shp(3, 16, 16));
            ck_assert_msg(j != NULL, "'%s': %s", buf, kdcl_last_error());
            kdcl_model_spec t;
            ck_assert_int_eq(kdcl_model_spec_from_json(j, &t), KDCL_OK);
            char why[128];
            ck_assert_msg(layers_equal(s.layers, s.n, t.layers, t.n, why, sizeof why), "'%s': %s", buf,
                          why);
            kdcl_model_spec_free(&t);
            free(j);
        }
        kdcl_model_spec_free(&s);
    }
    for (int it = 0; it < 2000; it++) {
        snprintf(buf, sizeof buf, "%s", jseeds[rng(&st) % 2]);
        mutate(buf, sizeof buf, &st);
        kdcl_model_spec s;
        kdcl_status r = kdcl_model_spec_from_json(buf, &s);
        if (r != KDCL_OK) {
            ck_assert_int_eq(r, KDCL_ERR_INVALID_ARG);
            continue;
        }
        jaccepted++;
        if (kdcl_spec_infer_model(&s, shp(3, 16, 16), o) == KDCL_OK)
            (void)kdcl_spec_check_json_shapes(buf, &s, shp(3, 16, 16));
        kdcl_model_spec_free(&s);
    }
    free(jseeds[0]);
    free(jseeds[1]);
    /* some mutations keep a valid spec; most do not */
    ck_assert_msg(accepted > 100 && accepted < 3900, "%zu of 4000 mutated specs accepted", accepted);
    ck_assert_msg(jaccepted > 10 && jaccepted < 1990, "%zu of 2000 mutated JSON texts accepted", jaccepted);
}
END_TEST

static Suite *spec_suite(void)
{
    Suite *s = suite_create("spec");
    TCase *tc = tcase_create("pure");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_legacy);
    tcase_add_test(tc, test_every_kind);
    tcase_add_test(tc, test_presets);
    tcase_add_test(tc, test_nested_and_limits);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_misfits);
    tcase_add_test(tc, test_json_errors);
    tcase_add_test(tc, test_file);
    tcase_add_test(tc, test_mutations);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(spec_suite()); }
