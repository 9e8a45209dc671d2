"""The model zoo: each PyTorch file in tests/zoo, how to build it and what to feed it.

`expected` lists the diagnostic codes a file's conversion must report (an
escape hatch we know about, kept honest by the test), `train_kwargs` makes a
BatchNorm model's train-mode test deterministic (dropout off).
"""
from harness import Case

CASES = [
    Case("mlp.py", "MLP", {}, [((4, 20), "float")]),
    Case("lenet.py", "LeNet", {}, [((2, 1, 28, 28), "float")]),
    Case("vgg_bn.py", "vgg_tiny_bn", {}, [((2, 3, 16, 16), "float")], train_kwargs={"dropout": 0.0}),
    Case("resnet.py", "resnet_tiny", {}, [((2, 3, 32, 32), "float")], train_kwargs={}),
    Case("unet.py", "UNet", {}, [((2, 3, 16, 16), "float")]),
    Case("convnext.py", "ConvNeXt", {}, [((2, 3, 32, 32), "float")]),
    Case("mobilenet.py", "MobileNetTiny", {}, [((2, 3, 32, 32), "float")], train_kwargs={"dropout": 0.0}),
    Case("gpt.py", "gpt_tiny", {}, [((2, 8), "int:50")]),
    Case("bert_embeddings.py", "BertEmbeddings", {}, [((2, 10), "int:100")]),
    Case("transformer_encoder.py", "TransformerClassifier", {}, [((2, 7), "int:50"), ((2, 7), "bool")]),
    Case("rnn_models.py", "LSTMTagger", {}, [((2, 7), "int:40")]),
    Case("rnn_models.py", "GRUEncoder", {}, [((5, 2, 12), "float")]),
    Case("rnn_models.py", "CellDecoder", {}, [((3, 6), "float")]),
    Case("vae.py", "VAE", {}, [((2, 1, 8, 8), "float")]),
    Case("mixer.py", "MLPMixer", {}, [((2, 3, 16, 16), "float")]),
    Case("audio.py", "M5", {}, [((2, 1, 400), "float")], train_kwargs={}),
    Case("dcgan.py", "Generator", {}, [((2, 8, 1, 1), "float")], train_kwargs={}),
    Case("conv_variants.py", "ConvVariantsNet", {}, [((2, 3, 15, 15), "float")]),
    Case("densenet.py", "DenseNet", {}, [((2, 3, 32, 32), "float")], train_kwargs={}),
    Case("vit.py", "VisionTransformer", {}, [((2, 3, 16, 16), "float")]),
    Case("dcgan.py", "Discriminator", {}, [((2, 3, 16, 16), "float")], train_kwargs={}),
]

# Escape hatches the zoo is known to need, by file (code, line).
EXPECTED_DIAGNOSTICS: dict[str, list[tuple[str, int]]] = {
    # none: timm-style drop_path, which draws a Bernoulli mask in a plain function, now receives
    # `rngs` and DropPath passes its own (tests/test_constructs.py checks the distribution)
}
