#!/usr/bin/python3
"""Streams a generation from tandem's gRPC API, tandem.v1.Inference (default 127.0.0.1:8001).

Needs Debian's python3-grpcio and python3-protobuf, and protoc (protobuf-compiler); the message
classes are generated from proto/ into a temporary directory on each run, and the call is made
without generated service stubs (grpc's generic unary_stream), so grpc_tools is not needed.

  scripts/grpc_generate.py --text "The capital of France is" --max-tokens 16
  scripts/grpc_generate.py --chat "Hello!"            # rendered with the model's chat template
  TANDEM_API_KEY=KEY scripts/grpc_generate.py ...     # when the server has an API key
  scripts/grpc_generate.py --list-models
"""
import argparse
import os
import subprocess
import sys
import tempfile

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_messages(out_dir):
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "--python_out", out_dir,
                    "tandem/v1/common.proto", "tandem/v1/inference.proto"], check=True)
    sys.path.insert(0, out_dir)
    from tandem.v1 import common_pb2, inference_pb2  # noqa: E402 (generated just above)
    return inference_pb2, common_pb2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:8001")
    parser.add_argument("--text", help="a prompt, tokenized as is")
    parser.add_argument("--chat", help="a user message, rendered with the chat template")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--list-models", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pb, common = load_messages(tmp)
        channel = grpc.insecure_channel(args.address)
        key = os.environ.get("TANDEM_API_KEY")
        metadata = [("authorization", "Bearer " + key)] if key else []
        if args.list_models:
            list_models = channel.unary_unary(
                "/tandem.v1.Inference/ListModels",
                request_serializer=pb.ListModelsRequest.SerializeToString,
                response_deserializer=pb.ListModelsResponse.FromString)
            for card in list_models(pb.ListModelsRequest(), metadata=metadata).models:
                print(card.id, card.max_model_len)
            return
        request = pb.InferenceGenerateRequest()
        if args.chat is not None:
            request.chat.messages.add(role="user", content=args.chat)
        else:
            request.text = args.text if args.text is not None else "Hello!"
        request.sampling.max_tokens = args.max_tokens
        request.sampling.temperature = args.temperature
        generate = channel.unary_stream(
            "/tandem.v1.Inference/Generate",
            request_serializer=pb.InferenceGenerateRequest.SerializeToString,
            response_deserializer=pb.InferenceGenerateResponse.FromString)
        try:
            for response in generate(request, metadata=metadata):
                sys.stdout.write(response.text)
                sys.stdout.flush()
                if response.finished:
                    print()
                    print(f"[{common.FinishReason.Name(response.finish_reason)}, "
                          f"{response.usage.prompt_tokens} prompt + "
                          f"{response.usage.completion_tokens} completion tokens]",
                          file=sys.stderr)
        except grpc.RpcError as e:
            print(f"grpc_generate: {e.code().name}: {e.details()}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
