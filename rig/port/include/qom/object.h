/*
 * gmem-rig port stub layer: the QOM (qom/object.h) the state managers use.
 * A tiny type registry, enough for these files and no more:
 *  - type_register_static() stores the TypeInfo (type_init runs the register
 *    function as a constructor, as QEMU's module init does at start-up);
 *  - object_new() finds the TypeInfo by name, initialises its class once
 *    (parents first, then class_init), allocates instance_size zeroed and
 *    runs instance_init (parents first); object_unref() at 0 runs
 *    instance_finalize (child first) and frees.
 *  - Interfaces are not separate class objects: a type's class is allocated
 *    RIG_CLASS_SIZE bytes (bigger than any interface class here) and the
 *    interface class casts are plain casts of it.  This is exact for a type
 *    that implements one interface, which is every type these files define.
 * The cast macros do not check types (QEMU's do, in debug builds): a wrong
 * cast would be a compile-time type error in the upstream code anyway.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QOM_OBJECT_H
#define RIG_QOM_OBJECT_H

#define TYPE_OBJECT "object"
#define TYPE_INTERFACE "interface"
#define RIG_CLASS_SIZE 512

typedef struct TypeImpl *Type;
typedef struct InterfaceClass InterfaceClass;
typedef struct InterfaceInfo InterfaceInfo;
typedef struct TypeInfo TypeInfo;

struct ObjectClass {
    Type type;
};

struct Object {
    ObjectClass *class;
    uint32_t ref;
    Object *parent;
};

struct InterfaceClass {
    ObjectClass parent_class;
    ObjectClass *concrete_class;
    Type interface_type;
};

struct InterfaceInfo {
    const char *type;
};

struct TypeInfo {
    const char *name;
    const char *parent;
    size_t instance_size;
    size_t instance_align;
    void (*instance_init)(Object *obj);
    void (*instance_post_init)(Object *obj);
    void (*instance_finalize)(Object *obj);
    bool abstract;
    size_t class_size;
    void (*class_init)(ObjectClass *klass, const void *data);
    void (*class_base_init)(ObjectClass *klass, const void *data);
    const void *class_data;
    const InterfaceInfo *interfaces;
};

Type type_register_static(const TypeInfo *info);
Object *object_new(const char *typename);
Object *object_ref(void *obj);
void object_unref(void *obj);
ObjectClass *object_get_class(Object *obj);
void object_unparent(Object *obj);

#define type_init(function)                                                 \
    static void __attribute__((constructor)) rig_type_init_##function(void) \
    {                                                                       \
        function();                                                         \
    }

#define OBJECT(obj) ((Object *)(obj))
#define OBJECT_CLASS(class) ((ObjectClass *)(class))
#define OBJECT_CHECK(type, obj, name) ((type *)(obj))
#define OBJECT_CLASS_CHECK(class_type, class, name) ((class_type *)(class))
#define OBJECT_GET_CLASS(class, obj, name)                                  \
    OBJECT_CLASS_CHECK(class, object_get_class(OBJECT(obj)), name)
#define INTERFACE_CHECK(interface, obj, name) ((interface *)(obj))

#define DECLARE_INSTANCE_CHECKER(InstanceType, OBJ_NAME, TYPENAME)          \
    static inline InstanceType *OBJ_NAME(const void *obj)                   \
    {                                                                       \
        return OBJECT_CHECK(InstanceType, obj, TYPENAME);                   \
    }

#define DECLARE_CLASS_CHECKERS(ClassType, OBJ_NAME, TYPENAME)               \
    static inline ClassType *OBJ_NAME##_GET_CLASS(const void *obj)          \
    {                                                                       \
        return OBJECT_GET_CLASS(ClassType, obj, TYPENAME);                  \
    }                                                                       \
    static inline ClassType *OBJ_NAME##_CLASS(const void *klass)            \
    {                                                                       \
        return OBJECT_CLASS_CHECK(ClassType, klass, TYPENAME);              \
    }

#define DECLARE_OBJ_CHECKERS(InstanceType, ClassType, OBJ_NAME, TYPENAME)   \
    DECLARE_INSTANCE_CHECKER(InstanceType, OBJ_NAME, TYPENAME)              \
    DECLARE_CLASS_CHECKERS(ClassType, OBJ_NAME, TYPENAME)

#define OBJECT_DECLARE_SIMPLE_TYPE(InstanceType, MODULE_OBJ_NAME)           \
    typedef struct InstanceType InstanceType;                               \
    DECLARE_INSTANCE_CHECKER(InstanceType, MODULE_OBJ_NAME,                 \
                             TYPE_##MODULE_OBJ_NAME)

#define OBJECT_DECLARE_TYPE(InstanceType, ClassType, MODULE_OBJ_NAME)       \
    typedef struct InstanceType InstanceType;                               \
    typedef struct ClassType ClassType;                                     \
    DECLARE_OBJ_CHECKERS(InstanceType, ClassType, MODULE_OBJ_NAME,          \
                         TYPE_##MODULE_OBJ_NAME)

/*
 * OBJECT_DEFINE_SIMPLE_TYPE_WITH_INTERFACES: declares the three functions
 * the file defines (name_init, name_finalize, name_class_init), its TypeInfo
 * (a simple type: the class is the parent's size, which RIG_CLASS_SIZE
 * covers) and registers it at start-up.
 */
#define OBJECT_DEFINE_TYPE_EXTENDED(ModuleObjName, module_obj_name,         \
                                    MODULE_OBJ_NAME, PARENT_MODULE_OBJ_NAME,\
                                    ABSTRACT, CLASS_SIZE, ...)              \
    static void module_obj_name##_finalize(Object *obj);                    \
    static void module_obj_name##_class_init(ObjectClass *oc,               \
                                             const void *data);             \
    static void module_obj_name##_init(Object *obj);                        \
    static const TypeInfo module_obj_name##_info = {                        \
        .parent = TYPE_##PARENT_MODULE_OBJ_NAME,                            \
        .name = TYPE_##MODULE_OBJ_NAME,                                     \
        .instance_size = sizeof(ModuleObjName),                             \
        .instance_align = __alignof__(ModuleObjName),                       \
        .instance_init = module_obj_name##_init,                            \
        .instance_finalize = module_obj_name##_finalize,                    \
        .class_size = CLASS_SIZE,                                           \
        .class_init = module_obj_name##_class_init,                         \
        .abstract = ABSTRACT,                                               \
        .interfaces = (const InterfaceInfo[]) { __VA_ARGS__ },              \
    };                                                                      \
    static void module_obj_name##_register_types(void)                      \
    {                                                                       \
        type_register_static(&module_obj_name##_info);                      \
    }                                                                       \
    type_init(module_obj_name##_register_types)

#define OBJECT_DEFINE_SIMPLE_TYPE_WITH_INTERFACES(ModuleObjName,            \
                                                  module_obj_name,          \
                                                  MODULE_OBJ_NAME,          \
                                                  PARENT_MODULE_OBJ_NAME,   \
                                                  ...)                      \
    OBJECT_DEFINE_TYPE_EXTENDED(ModuleObjName, module_obj_name,             \
                                MODULE_OBJ_NAME, PARENT_MODULE_OBJ_NAME,    \
                                false, 0, __VA_ARGS__)

#define OBJECT_DEFINE_SIMPLE_TYPE(ModuleObjName, module_obj_name,           \
                                  MODULE_OBJ_NAME, PARENT_MODULE_OBJ_NAME)  \
    OBJECT_DEFINE_SIMPLE_TYPE_WITH_INTERFACES(ModuleObjName,                \
                                              module_obj_name,              \
                                              MODULE_OBJ_NAME,              \
                                              PARENT_MODULE_OBJ_NAME, { })

#endif
