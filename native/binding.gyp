{
  "targets": [
    {
      "target_name": "paravane_kvm",
      "sources": ["src/addon.cc", "src/kvm.cc", "src/memory.cc", "src/kick.cc", "src/vcpu-thread.cc", "src/kvm-abi.c"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["-lrt"]
    }
  ]
}
