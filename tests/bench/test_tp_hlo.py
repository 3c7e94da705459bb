"""Reading collectives from HLO text (`fnbackprop.bench.tp.hlo_collectives`): each of XLA's ways of writing the
replica groups, tuple results, and the bytes each device sends, on lines written here with their answers
worked by hand."""

from fnbackprop.bench.tp import hlo_collectives

MESH = {"data": 2, "model": 4}  # devices 0..7 row-major: model groups {0,1,2,3},{4,5,6,7}; data groups {0,4},...


def one(line: str) -> dict:
    [found] = hlo_collectives(line, MESH)
    return found


def test_an_explicit_all_reduce_over_model():
    c = one("%psum.1 = f32[6,64,128]{2,1,0} all-reduce(%x), channel_id=1, replica_groups={{0,1,2,3},{4,5,6,7}}, to_apply=%add")
    buffer = 6 * 64 * 128 * 4
    assert (c["kind"], c["axis"], c["group"], c["buffer_bytes"]) == ("all-reduce", "model", 4, buffer)
    assert c["bytes"] == 2 * 3 * buffer // 4  # ring: 2 (g - 1) / g of the buffer


def test_iota_groups_transposed_run_over_data():
    # [4,2]<=[2,4]T(1,0): ids (2, 4) transposed to (4, 2): groups {0,4},{1,5},{2,6},{3,7}
    c = one("%ar = f32[10]{0} all-reduce(%x), replica_groups=[4,2]<=[2,4]T(1,0), to_apply=%add")
    assert (c["axis"], c["group"], c["bytes"]) == ("data", 2, 40)


def test_a_tuple_all_reduce_with_index_comments_counts_every_element():
    line = ("%all-reduce.1 = (f32[], f32[4,2]{1,0}, /*index=2*/f64[3]{0}) all-reduce(%a, %b, %c), "
            "replica_groups=[4,2]<=[2,4]T(1,0), to_apply=%add")
    c = one(line)
    assert c["buffer_bytes"] == 4 + 32 + 24 and c["shapes"] == [[], [4, 2], [3]]


def test_reduce_scatter_buffer_is_its_operand_and_all_gather_its_result():
    rs = one("%rs = f32[6,16,128]{2,1,0} reduce-scatter(%x), replica_groups=[2,4]<=[8], dimensions={1}, to_apply=%add")
    ag = one("%ag = f32[6,64,128]{2,1,0} all-gather(%x), replica_groups=[2,4]<=[8], dimensions={1}")
    full = 6 * 64 * 128 * 4
    assert rs["buffer_bytes"] == ag["buffer_bytes"] == full and rs["axis"] == ag["axis"] == "model"
    assert rs["bytes"] == ag["bytes"] == 3 * full // 4


def test_xlas_mesh_form_and_permute_pairs():
    a2a = one("%a = (f32[6,1,16,32]{3,2,1,0}, f32[6,1,16,32]{3,2,1,0}) all-to-all(%x, %y), "
              "replica_groups=mesh['axis_0'=2,'axis_1'=4,'axis_2'=1] {'axis_1'}, metadata={}")
    assert (a2a["axis"], a2a["group"]) == ("model", 4)
    perm = one("%cp = f32[8]{0} collective-permute(%x), source_target_pairs={{3,1},{7,5}}")
    assert (perm["kind"], perm["axis"], perm["bytes"]) == ("collective-permute", "model", 32)
    perm = one("%cp = f32[8]{0} collective-permute(%x), source_target_pairs={{1,5}}")
    assert perm["axis"] == "data"


def test_done_halves_and_other_ops_are_not_counted():
    text = "\n".join(["%d = f32[4]{0} all-reduce-done(%s)", "%y = f32[4]{0} add(%a, %b)",
                      "%s = f32[4]{0} all-reduce-start(%x), replica_groups={{0,1,2,3},{4,5,6,7}}, to_apply=%add"])
    assert [c["kind"] for c in hlo_collectives(text, MESH)] == ["all-reduce"]
