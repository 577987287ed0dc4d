//! The model layer on ONNX graphs written here (tract-onnx's protobuf types): loading, shapes,
//! output selection, threshold modes, errors instead of panics.

use std::collections::BTreeMap;

use dials_ml::model::model_id;
use dials_ml::onnx::OnnxModel;
use dials_ml::score::score_run;
use dials_ml::{InputMe, MeRows, MlError, ModelDoc, RunInput};
use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

const FLOAT: i32 = 1;
const BOOL: i32 = 9;

fn value(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, axes: Option<Vec<i64>>) -> NodeProto {
    let mut attribute = Vec::new();
    if let Some(a) = axes {
        attribute.push(AttributeProto {
            name: "axes".into(),
            ints: a,
            r#type: AttributeType::Ints as i32,
            ..Default::default()
        });
        attribute.push(AttributeProto {
            name: "keepdims".into(),
            i: 0,
            r#type: AttributeType::Int as i32,
            ..Default::default()
        });
    }
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

/// x [N, bins] -> mse = mean(x^2) per row, flag = mse > 1.
fn energy_model(bins: i64) -> Vec<u8> {
    let graph = GraphProto {
        node: vec![
            node("Mul", &["x", "x"], "x2", None),
            node("ReduceMean", &["x2"], "mse", Some(vec![1])),
            node("Greater", &["mse", "t"], "flag", None),
        ],
        name: "energy".into(),
        initializer: vec![TensorProto {
            dims: vec![],
            data_type: FLOAT,
            float_data: vec![1.0],
            name: "t".into(),
            ..Default::default()
        }],
        input: vec![value("x", FLOAT, &[None, Some(bins)])],
        output: vec![value("mse", FLOAT, &[None]), value("flag", BOOL, &[None])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn doc(threshold: Option<f64>, metric: Option<&str>, flag: Option<&str>) -> ModelDoc {
    ModelDoc {
        id: model_id("ws", "energy", 1),
        name: "energy".into(),
        revision: 1,
        ready: true,
        active: true,
        kind: "onnx".into(),
        anomaly_threshold: threshold,
        builtin_threshold: flag.is_some(),
        description: String::new(),
        flagging_key: flag.map(String::from),
        input_signature: vec![InputMe {
            name: "x".into(),
            me: "A/b".into(),
            me_id: 1,
            dim: 1,
            dims: vec![-1, 3],
            data_type: "float32".into(),
        }],
        metric_key: metric.map(String::from),
        output_signature: vec![],
        tags: None,
        isvc_service_name: None,
        isvc_yaml: None,
        created_by: "t".into(),
        modified_by: "t".into(),
        created_at: String::new(),
        modified_at: String::new(),
        reason: None,
        workspace: "ws".into(),
        filename: "energy.onnx".into(),
    }
}

fn input(rows: &[((i64, i64), Vec<f32>)]) -> RunInput {
    RunInput {
        run: 7,
        mes: vec![MeRows {
            me: "A/b".into(),
            tail: vec![3],
            rows: rows.iter().cloned().collect::<BTreeMap<_, _>>(),
        }],
    }
}

#[test]
fn scores_and_flags_per_lumisection_in_both_modes() {
    let m = OnnxModel::load("energy@1", &energy_model(3), &[vec![3]]).expect("load");
    assert_eq!(m.inputs, vec!["x"]);
    assert_eq!(
        m.outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        vec!["mse", "flag"]
    );
    assert_eq!(m.outputs[0].dims, vec![-1]);
    let inp = input(&[
        ((1, 10), vec![1.0, 1.0, 1.0]),
        ((2, 10), vec![2.0, 2.0, 2.0]),
        ((2, 11), vec![0.0, 0.0, 3.0]),
    ]);
    let a = score_run(&doc(Some(2.0), Some("mse"), None), &m, &inp).expect("mode A");
    let got: Vec<(i64, i64, f64, bool)> = a
        .iter()
        .map(|r| (r.ls_number, r.file_id, r.score.unwrap_or(f64::NAN), r.flag))
        .collect();
    assert_eq!(
        got,
        vec![(1, 10, 1.0, false), (2, 10, 4.0, true), (2, 11, 3.0, true)]
    );
    // Mode B: the model's own flag (mse > 1), the metric stored beside it; outputs by position too.
    let b = score_run(&doc(None, Some("0"), Some("flag")), &m, &inp).expect("mode B");
    assert_eq!(
        b.iter().map(|r| (r.flag, r.score)).collect::<Vec<_>>(),
        vec![(false, Some(1.0)), (true, Some(4.0)), (true, Some(3.0))]
    );
    // The same loaded model serves batches of any size.
    assert_eq!(
        score_run(
            &doc(Some(2.0), Some("mse"), None),
            &m,
            &input(&[((5, 1), vec![0.0; 3])])
        )
        .expect("one")
        .len(),
        1
    );
    assert!(
        score_run(&doc(Some(2.0), Some("mse"), None), &m, &input(&[]))
            .expect("none")
            .is_empty()
    );
}

#[test]
fn bad_models_and_inputs_are_errors_not_panics() {
    // Corrupt bytes, wrong bin count for the file's declared shape.
    assert!(matches!(
        OnnxModel::load("x", b"\x08\x07garbage", &[vec![3]]),
        Err(MlError::Load { .. })
    ));
    assert!(matches!(
        OnnxModel::load("x", &energy_model(3), &[vec![4]]),
        Err(MlError::Load { .. })
    ));
    assert!(matches!(
        OnnxModel::load("x", &energy_model(3), &[vec![3], vec![3]]),
        Err(MlError::Load { .. })
    ));
    let m = OnnxModel::load("energy@1", &energy_model(3), &[vec![3]]).expect("load");
    // A histogram with other bins than the model takes.
    let e = score_run(
        &doc(Some(1.0), Some("mse"), None),
        &m,
        &input(&[((1, 1), vec![1.0, 2.0])]),
    )
    .expect_err("bins");
    assert!(matches!(e, MlError::Input { .. }), "{e}");
    // An output the model does not have.
    let e = score_run(
        &doc(Some(1.0), Some("nope"), None),
        &m,
        &input(&[((1, 1), vec![1.0; 3])]),
    )
    .expect_err("key");
    assert!(e.to_string().contains("no output 'nope'"), "{e}");
}
