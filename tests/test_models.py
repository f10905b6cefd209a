"""Shapes, parameter names and initialisation of the networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtransfer import freezing, models
from jaxtransfer.errors import UserError

TORCHVISION_BODY_KERNELS = {  # torchvision OIHW shapes, as HWIO
    "conv1": (11, 11, 3, 64),
    "conv2": (5, 5, 64, 192),
    "conv3": (3, 3, 192, 384),
    "conv4": (3, 3, 384, 256),
    "conv5": (3, 3, 256, 256),
}


def _init(model, size, batch=2):
  x = jnp.zeros((batch, size, size, 3))
  return model.init(jax.random.key(0), x)["params"], x


@pytest.mark.parametrize("size, spatial", [(64, 1), (128, 3), (224, 6)])
def test_classifier_output_and_feature_shapes(size, spatial):
  model = models.Classifier(num_classes=10)
  params, x = _init(model, size)
  logits = model.apply({"params": params}, x)
  assert logits.shape == (2, 10)
  assert logits.dtype == jnp.float32
  features = models.AlexNetBody().apply({"params": params["body"]}, x)
  assert features.shape == (2, spatial, spatial, 256)
  assert models.feature_dim(size) == 256 * spatial * spatial
  assert params["head"]["fc1"]["kernel"].shape == (256 * spatial**2, 500)
  assert params["head"]["fc2"]["kernel"].shape == (500, 10)


def test_head_input_is_2304_at_128px():
  assert models.feature_dim(128) == 2304


def test_body_parameter_names_follow_torchvision_layout():
  params, _ = _init(models.Classifier(num_classes=10), 128)
  names = dict(freezing.named_leaves(params))
  expected = {f"body/{conv}/{p}" for conv in TORCHVISION_BODY_KERNELS
              for p in ("kernel", "bias")} | {
                  f"head/{fc}/{p}" for fc in ("fc1", "fc2")
                  for p in ("kernel", "bias")}
  assert set(names) == expected
  for conv, shape in TORCHVISION_BODY_KERNELS.items():
    assert names[f"body/{conv}/kernel"].shape == shape
    assert names[f"body/{conv}/bias"].shape == (shape[-1],)


@pytest.mark.parametrize("size", [64, 128])
def test_autoencoder_reconstructs_the_input_shape_with_the_same_body(size):
  ae = models.Autoencoder(image_size=size)
  ae_params, x = _init(ae, size)
  assert ae.apply({"params": ae_params}, x).shape == x.shape
  cls_params, _ = _init(models.Classifier(num_classes=10), size)
  ae_body = jax.tree.map(jnp.shape, ae_params["body"])
  cls_body = jax.tree.map(jnp.shape, cls_params["body"])
  assert ae_body == cls_body
  assert set(ae_params) == {"body", "decoder"}


def test_smallest_image_size_is_63_and_smaller_is_a_clear_error():
  assert models.MIN_IMAGE_SIZE == 63
  params, x = _init(models.Classifier(num_classes=10), 63, batch=1)
  assert models.Classifier(10).apply({"params": params}, x).shape == (1, 10)
  with pytest.raises(UserError, match="at least 63 px"):
    models.check_image_size(62)


def test_torch_init_matches_pytorch_default_bounds():
  params, _ = _init(models.Classifier(num_classes=10), 64)
  for conv, (kh, kw, cin, _) in TORCHVISION_BODY_KERNELS.items():
    bound = 1.0 / np.sqrt(kh * kw * cin)
    kernel = np.asarray(params["body"][conv]["kernel"])
    bias = np.asarray(params["body"][conv]["bias"])
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    # Uniform(-b, b) has std b/sqrt(3); the kernels are large samples of it.
    assert abs(kernel.std() - bound / np.sqrt(3)) < 0.05 * bound
